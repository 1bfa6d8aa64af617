# Sidekiq side of bench/sidekiq: one job class, BenchJob(payload, sleep_s), on queue "bench".
# A server middleware records, for every job, when it started and finished and its enqueued_at;
# after BENCH_N jobs it writes all records to the Redis list bench:result as one JSON document.
require "json"
require "sidekiq"

Redis.sadd_returns_boolean = false

module Bench
  N = Integer(ENV.fetch("BENCH_N"))
  LOCK = Mutex.new
  RECORDS = []

  def self.add(started, finished, enqueued_at)
    done = LOCK.synchronize do
      RECORDS << [started, finished, enqueued_at]
      RECORDS.size == N ? RECORDS.dup : nil
    end
    Sidekiq.redis { |c| c.rpush("bench:result", JSON.generate(done)) } if done
  end
end

class BenchRecorder
  def call(_worker, job, _queue)
    started = Time.now.to_f
    yield
    Bench.add(started, Time.now.to_f, job["enqueued_at"])
  end
end

Sidekiq.configure_server do |config|
  config.server_middleware { |chain| chain.add BenchRecorder }
end

class BenchJob
  include Sidekiq::Worker
  sidekiq_options queue: "bench", retry: false

  def perform(_payload, sleep_s = 0)
    sleep(sleep_s) if sleep_s > 0
  end
end
