// A Redis connection from a redis:// URL (the benchmark's server is private
// and has no password). BullMQ takes the client itself in an ES module.
import IORedis from 'ioredis';

export function connection(url) {
  const u = new URL(url);
  return new IORedis({ host: u.hostname, port: Number(u.port || 6379), maxRetriesPerRequest: null });
}
