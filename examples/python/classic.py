"""The classic four-stage task, as a staged stage.

The usual first version of a multi-stage job is a Flask app whose
execute_task runs four stages, each appending to the data and updating
current_stage. Here each stage is this script, run once per stage by the
staged worker (pipelines.yaml): it reads the data so far on stdin, works
in steps reporting its progress and the data so far, and returns the data
with its mark appended.
"""

import time

import staged_stage as stage


def main(data):
    text = data["data"]
    steps = int(data.get("steps", 5))
    delay = float(data.get("delay", 0.4))
    k = stage.stage_index()
    for i in range(1, steps + 1):
        time.sleep(delay)  # the real work goes here
        stage.progress(i / steps, partial={"data": text, "stage": k, "step": i})
    stage.log("stage %d of job %s done" % (k, stage.job_id()))
    return {"data": text + " -> processed by stage %d" % k, "steps": steps, "delay": delay}


stage.run(main)
