# The no-op job Sidekiq runs, loaded with `sidekiq -r ./job.rb`. It counts
# runs in memory (no extra Redis work) and, at the last one, writes the
# processing rate from its first job to its last to BENCH_DONE. Sidekiq's
# per-job log lines are turned off, as resq's are in the benchmark.
require 'sidekiq'

Sidekiq.configure_server do |config|
  config.redis = { url: ENV.fetch('REDIS_URL') }
  config.logger.level = Logger::WARN
end

class NoopJob
  include Sidekiq::Worker
  TOTAL = Integer(ENV.fetch('BENCH_JOBS'))
  LOCK = Mutex.new
  @count = 0
  @first = nil

  class << self
    attr_accessor :count, :first
  end

  def perform(*)
    now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    done = LOCK.synchronize do
      NoopJob.first ||= now
      NoopJob.count += 1
    end
    return unless done == TOTAL

    rate = (TOTAL - 1) / [now - NoopJob.first, 1e-9].max
    File.write(ENV.fetch('BENCH_DONE'), rate.round.to_s)
  end
end
