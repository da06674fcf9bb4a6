// The drain baseline of BENCHMARKS.md: graphile-worker, a mature Postgres job queue, running
// COUNT no-op jobs on the same Postgres. Usage: node drain.js DATABASE_URL COUNT CONCURRENCY
// Prints one JSON line: {"jobs","seconds","rate"}; the clock runs from the worker's start to
// its last job's success (adding the jobs is not timed).
const { run, makeWorkerUtils, Logger } = require("graphile-worker");

// Per-job log lines would measure the console, not the queue.
const silent = new Logger(() => () => {});

async function main() {
  const [connectionString, countText, concurrencyText] = process.argv.slice(2);
  const count = Number(countText);
  const concurrency = Number(concurrencyText);
  const utils = await makeWorkerUtils({ connectionString, logger: silent });
  await utils.migrate();
  // One bulk add_jobs call per 10,000 jobs (add_job per job would NOTIFY once per job).
  await utils.withPgClient(async (client) => {
    for (let first = 1; first <= count; first += 10000) {
      const last = Math.min(first + 9999, count);
      await client.query(
        `SELECT count(*) FROM graphile_worker.add_jobs(ARRAY(
           SELECT ('noop', json_build_object('n', n), null, null, null, null, null, null)::graphile_worker.job_spec
           FROM generate_series($1::int, $2::int) AS n))`,
        [first, last],
      );
    }
  });
  await utils.release();

  let done = 0;
  let finished;
  const allDone = new Promise((resolve) => (finished = resolve));
  const started = performance.now();
  const runner = await run({
    connectionString,
    concurrency,
    noHandleSignals: true,
    pollInterval: 1000,
    logger: silent,
    taskList: { noop: async () => {} },
  });
  runner.events.on("job:success", () => {
    done += 1;
    if (done === count) finished();
  });
  await allDone;
  const seconds = (performance.now() - started) / 1000;
  await runner.stop();
  console.log(JSON.stringify({ jobs: count, seconds, rate: count / seconds }));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
