"""CSV report, stage 2: statistics of each numeric column, per group."""

import statistics
import time

import staged_stage as stage


def describe(values):
    return {
        "count": len(values),
        "mean": round(statistics.fmean(values), 4),
        "median": statistics.median(values),
        "stdev": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def main(data):
    rows, cols, by = data["rows"], data["columns"], data.get("group_by")
    if not rows:
        raise stage.Fail("the CSV has no rows", permanent=True)
    stats = {}
    for i, col in enumerate(cols):
        stats[col] = {"all": describe([r[col] for r in rows])}
        if by:
            groups = {}
            for r in rows:
                groups.setdefault(str(r[by]), []).append(r[col])
            stats[col]["by_" + by] = {g: describe(v) for g, v in sorted(groups.items())}
        time.sleep(0.2)  # pretend it is expensive, to see the progress move
        stage.progress((i + 1) / len(cols), partial={"done": cols[: i + 1]})
    return {"source": data["source"], "rows": len(rows), "group_by": by, "stats": stats}


stage.run(main)
