# Pushes BENCH_N Sidekiq-format BenchJob jobs with Sidekiq's own client (push_bulk, 1,000 a call).
# Usage: BENCH_N=20000 PAYLOAD_BYTES=5120 SLEEP_S=0 REDIS_URL=... ruby enqueue.rb
require "sidekiq"

Redis.sadd_returns_boolean = false
n = Integer(ENV.fetch("BENCH_N"))
payload = "x" * Integer(ENV.fetch("PAYLOAD_BYTES", "5120"))
sleep_s = Float(ENV.fetch("SLEEP_S", "0"))
sleep_s = sleep_s.to_i if sleep_s == sleep_s.to_i
(0...n).each_slice(1000) do |slice|
  Sidekiq::Client.push_bulk("class" => "BenchJob", "queue" => "bench", "retry" => false,
                            "args" => slice.map { [payload, sleep_s] })
end
