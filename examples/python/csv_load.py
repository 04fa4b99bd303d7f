"""CSV report, stage 1: read the CSV into rows of numbers."""

import csv
import io
import os

import staged_stage as stage


def main(inp):
    path = inp["csv"]
    if not os.path.isabs(path):
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), path)
    try:
        with open(path, newline="") as f:
            text = f.read()
    except OSError as e:
        raise stage.Fail("cannot read the CSV %s: %s" % (inp["csv"], e.strerror), permanent=True)
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise stage.Fail("the CSV %s has no header row" % inp["csv"], permanent=True)
    rows = list(reader)
    by = inp.get("group_by")
    if by and by not in reader.fieldnames:
        raise stage.Fail("group_by: the CSV has no column %r (it has %s)" % (by, ", ".join(reader.fieldnames)), permanent=True)
    numeric = [c for c in reader.fieldnames if rows and all(_is_number(r[c]) for r in rows)]
    stage.progress(1, partial={"rows": len(rows), "columns": reader.fieldnames})
    return {
        "source": inp["csv"],
        "group_by": inp.get("group_by"),
        "columns": numeric,
        "rows": [{c: (float(r[c]) if c in numeric else r[c]) for c in reader.fieldnames} for r in rows],
    }


def _is_number(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


stage.run(main)
