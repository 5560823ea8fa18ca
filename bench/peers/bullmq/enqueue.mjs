// Adds N no-op jobs with BullMQ's own bulk add (10,000 a call) and prints the
// rate in jobs/s. Usage: node enqueue.mjs REDIS_URL N
import { Queue } from 'bullmq';
import { connection } from './connection.mjs';

const [url, total] = [process.argv[2], Number(process.argv[3])];
const client = connection(url);
const queue = new Queue('bench', { connection: client });
// Completed jobs are removed, as resq keeps nothing for a success.
const opts = { removeOnComplete: true, removeOnFail: true };
const start = performance.now();
for (let from = 0; from < total; from += 10000) {
  const count = Math.min(10000, total - from);
  await queue.addBulk(Array.from({ length: count }, () => ({ name: 'noop', data: {}, opts })));
}
console.log(Math.round(total / ((performance.now() - start) / 1000)));
await queue.close();
await client.quit();
