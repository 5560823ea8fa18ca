// One BullMQ worker process: runs N no-op jobs and prints the processing rate
// from its first completed job to its last. Usage:
// node work.mjs REDIS_URL N CONCURRENCY
import { Worker } from 'bullmq';
import { connection } from './connection.mjs';

const [url, total, concurrency] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
let count = 0;
let first = 0;
const worker = new Worker('bench', async () => {}, { connection: connection(url), concurrency });
worker.on('completed', async () => {
  count += 1;
  if (count === 1) first = performance.now();
  if (count === total) {
    const seconds = Math.max((performance.now() - first) / 1000, 1e-9);
    console.log(Math.round((total - 1) / seconds));
    await worker.close(true);
    process.exit(0);
  }
});
