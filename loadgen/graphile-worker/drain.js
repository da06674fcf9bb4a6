// The drain baseline of BENCHMARKS.md: graphile-worker, a mature Postgres job queue, running
// COUNT no-op jobs on the same Postgres, with the high-throughput configuration of its own
// performance page (https://worker.graphile.org/docs/performance): 24 concurrent jobs per
// instance, a pool of 25 connections, a local queue of 500 jobs, batched job completion and
// failure (`completeJobBatchDelay: 0`, `failJobBatchDelay: 0`), jobs queued in bulk (addJobs).
//
// Usage: node drain.js DATABASE_URL COUNT [CONCURRENCY=24] [INSTANCES=1] [LOCAL_QUEUE=500]
// Prints one JSON line: {"jobs","seconds","rate",...}. The clock runs from telling the
// already-loaded instances to start (each then connects and starts its pool, as a worker
// process would) to the last job's success; adding the jobs is not timed.
const { fork } = require("node:child_process");
const { run, makeWorkerUtils, Logger } = require("graphile-worker");

// Per-job log lines would measure the console, not the queue.
const silent = new Logger(() => () => {});

function settings() {
  const [connectionString, countText, concurrencyText, instancesText, localQueueText] =
    process.argv.slice(2);
  const concurrency = Number(concurrencyText ?? 24);
  return {
    connectionString,
    count: Number(countText),
    concurrency,
    instances: Number(instancesText ?? 1),
    localQueue: Number(localQueueText ?? 500),
  };
}

/// One graphile-worker instance (a child process): waits for "go", runs, reports its count of
/// succeeded jobs every 10 ms until told to stop.
async function instance() {
  const { connectionString, concurrency, localQueue } = settings();
  let done = 0;
  let reported = -1;
  let runner;
  process.on("message", async (message) => {
    if (message === "go") {
      runner = await run({
        noHandleSignals: true,
        logger: silent,
        taskList: { noop: async () => {} },
        preset: {
          worker: {
            connectionString,
            concurrentJobs: concurrency,
            maxPoolSize: concurrency + 1,
            localQueue: { size: localQueue },
            completeJobBatchDelay: 0,
            failJobBatchDelay: 0,
            pollInterval: 1000,
          },
        },
      });
      runner.events.on("job:success", () => {
        done += 1;
      });
    } else if (message === "stop") {
      clearInterval(ticker);
      process.send({ done });
      if (runner) await runner.stop();
      process.exit(0);
    }
  });
  const ticker = setInterval(() => {
    if (done !== reported) {
      reported = done;
      process.send({ done });
    }
  }, 10);
  process.send("ready");
}

async function main() {
  const { connectionString, count, concurrency, instances, localQueue } = settings();
  const utils = await makeWorkerUtils({ connectionString, logger: silent });
  await utils.migrate();
  // Bulk: one addJobs call (one add_jobs statement) per 10,000 jobs.
  for (let first = 1; first <= count; first += 10000) {
    const specs = [];
    for (let n = first; n <= Math.min(first + 9999, count); n += 1) {
      specs.push({ identifier: "noop", payload: { n } });
    }
    await utils.addJobs(specs);
  }
  await utils.release();

  const children = [];
  const counts = new Array(instances).fill(0);
  let readyCount = 0;
  let started;
  let allReadyNow;
  let finished;
  const allReady = new Promise((resolve) => (allReadyNow = resolve));
  const allDone = new Promise((resolve) => (finished = resolve));
  for (let i = 0; i < instances; i += 1) {
    const child = fork(__filename, process.argv.slice(2), {
      env: { ...process.env, DRAIN_INSTANCE: String(i) },
    });
    child.on("message", (message) => {
      if (message === "ready") {
        readyCount += 1;
        if (readyCount === instances) allReadyNow();
        return;
      }
      counts[i] = message.done;
      if (started !== undefined && counts.reduce((a, b) => a + b, 0) >= count) finished();
    });
    child.on("exit", (code) => {
      if (code !== 0) {
        console.error(`instance ${i} exited with ${code}`);
        process.exit(1);
      }
    });
    children.push(child);
  }
  await allReady;
  started = performance.now();
  for (const child of children) child.send("go");
  await allDone;
  const seconds = (performance.now() - started) / 1000;
  const exits = children.map((child) => new Promise((resolve) => child.once("exit", resolve)));
  for (const child of children) child.send("stop");
  await Promise.all(exits);
  console.log(
    JSON.stringify({
      jobs: count,
      seconds,
      rate: count / seconds,
      instances,
      concurrency,
      localQueue,
      perInstance: counts,
    }),
  );
}

(process.env.DRAIN_INSTANCE === undefined ? main() : instance()).catch((error) => {
  console.error(error);
  process.exit(1);
});
