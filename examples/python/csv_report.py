"""CSV report, stage 3: a Markdown report of the statistics."""

import os

import staged_stage as stage


def main(data):
    lines = ["# Report on %s" % data["source"], "", "%d rows." % data["rows"], ""]
    for col, st in data["stats"].items():
        a = st["all"]
        lines += ["## %s" % col, "",
                  "| | count | mean | median | stdev | min | max |", "|---|---|---|---|---|---|---|",
                  "| all | %(count)d | %(mean)s | %(median)s | %(stdev)s | %(min)s | %(max)s |" % a]
        for g, s in st.get("by_%s" % data.get("group_by"), {}).items():
            lines.append(("| %s " % g) + "| %(count)d | %(mean)s | %(median)s | %(stdev)s | %(min)s | %(max)s |" % s)
        lines.append("")
    report = "\n".join(lines)
    path = os.path.join(stage.scratch(), "report.md")  # files for later stages of this run go here
    with open(path, "w") as f:
        f.write(report)
    stage.log("report written: %d bytes" % len(report))
    return {"report": report, "stats": data["stats"]}


stage.run(main)
