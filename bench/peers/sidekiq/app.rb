# Sidekiq 6.4.1 benchmark jobs (Debian's ruby-sidekiq). Same marks as bench/peers/apps/marks.py,
# on the same second Redis: a finished job INCRs bench:done; the first and the BENCH_TARGET-th
# also record their time and push a signal the harness blocks on.
require "sidekiq"
require "connection_pool"

BENCH_URL = ENV.fetch("BENCH_REDIS_URL")
BENCH_TARGET = ENV.fetch("BENCH_TARGET", "0").to_i
MARKS_POOL_SIZE = 50
Sidekiq.configure_server { |config| config.redis = { url: BENCH_URL } }
Sidekiq.configure_client { |config| config.redis = { url: BENCH_URL } }

module Marks
  POOL = ConnectionPool.new(size: MARKS_POOL_SIZE) { Redis.new(url: ENV.fetch("BENCH_MARKS_URL")) }

  def self.with(&block)
    POOL.with(&block)
  end

  def self.done
    with do |r|
      n = r.incr("bench:done")
      now = Time.now.to_f.to_s
      if n == 1
        r.set("bench:t_first", now)
        r.rpush("bench:first", "1")
      end
      if n == BENCH_TARGET
        r.set("bench:t_last", now)
        r.rpush("bench:finished", "1")
      end
    end
  end
end

class NoopJob
  include Sidekiq::Worker
  def perform(_i)
    Marks.done
  end
end

class SleepJob
  include Sidekiq::Worker
  def perform(ms)
    sleep(ms / 1000.0)
    Marks.done
  end
end

class StampJob
  include Sidekiq::Worker
  def perform(sent)
    latency = Time.now.to_f - sent
    Marks.with { |r| r.rpush("bench:lat", latency.to_s) }
  end
end

class SecondJob
  include Sidekiq::Worker
  def perform(_i)
    Marks.with { |r| r.set("bench:t_start", Time.now.to_f.to_s, nx: true) }
    sleep(1)
    Marks.done
  end
end
