# Pushes N no-op jobs with Sidekiq's own bulk push (10,000 a call) and prints
# the rate in jobs/s. Usage: REDIS_URL=... ruby enqueue.rb N
require 'sidekiq'

n = Integer(ARGV.fetch(0))
Sidekiq.configure_client { |c| c.redis = { url: ENV.fetch('REDIS_URL'), size: 1 } }
start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
0.step(n - 1, 10_000) do |from|
  count = [10_000, n - from].min
  Sidekiq::Client.push_bulk('class' => 'NoopJob', 'queue' => 'default', 'args' => Array.new(count) { [] })
end
elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - start
puts (n / elapsed).round
