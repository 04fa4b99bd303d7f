// BullMQ doing staged's e2e scenario: a worker (concurrency 50, -stages
// progress updates per job) runs while 50 adders add N jobs one at a time;
// jobs/s from the first add to the last finish. run.sh copies this file next
// to the BullMQ peer (../shared/peers/bullmq) after its npm install.
// Usage: REDIS_PORT=... node bullmq-e2e.js N [STAGES] [CONCURRENCY]. Prints one JSON line.
const { Queue, Worker } = require('bullmq');
const connection = { host: process.env.REDIS_HOST || '127.0.0.1', port: +(process.env.REDIS_PORT || 6379) };
const N = +process.argv[2] || 20000, STAGES = +(process.argv[3] ?? 4), CONC = +(process.argv[4] || 50);

async function main() {
  const q = new Queue('peer-bullmq-e2e', { connection });
  await q.obliterate({ force: true }).catch(() => {});
  let done = 0, finished;
  const all = new Promise(r => { finished = r; });
  const w = new Worker('peer-bullmq-e2e', async job => {
    for (let s = 1; s <= STAGES; s++) await job.updateProgress({ stage: s, partial: { stage: s } });
    if (++done === N) finished();
  }, { connection, concurrency: CONC });
  await w.waitUntilReady();
  const t0 = Date.now();
  let i = 0;
  async function adder() { while (i < N) { i++; await q.add('job', { k: i }, { removeOnComplete: { age: 3600 } }); } }
  await Promise.all(Array.from({ length: 50 }, adder));
  const added = (Date.now() - t0) / 1000;
  await all;
  const secs = (Date.now() - t0) / 1000;
  await w.close(); await q.obliterate({ force: true }).catch(() => {}); await q.close();
  console.log(JSON.stringify({ peer: 'bullmq', mode: 'e2e', n: N, stages: STAGES, concurrency: CONC,
    enqueue_per_s: N / added, process_per_s: N / secs, seconds: secs }));
}

main().then(() => process.exit(0), e => { console.error(e); process.exit(1); });
