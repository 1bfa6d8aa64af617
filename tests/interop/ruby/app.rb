# The small Ruby app of the interop suite: Sidekiq 6.4.1 and ActiveJob 6.1 from Debian.
#
# Loaded by `sidekiq -r ./app.rb`, by driver.rb (one-shot client commands) and by config.ru
# (the Web UI). Every job that runs here records what it received in the Redis list
# `interop:ran` as JSON, so the Python tests can check the arguments Ruby saw.
#
# Environment: REDIS_URL (Sidekiq reads it), INTEROP_POLL_S (scheduled-set poll average,
# seconds; default 1 so the tests do not wait Sidekiq's 5-15 s).
require "json"
require "bigdecimal"
require "date"
require "sidekiq"
require "sidekiq/api"
require "active_job"
require "active_support/core_ext/hash/indifferent_access"
require "active_support/core_ext/numeric/time"
require "active_support/time"
require "global_id"

Redis.sadd_returns_boolean = false  # silence redis-rb 4.8's deprecation notice
Time.zone = "Europe/Berlin"
GlobalID.app = "interop"
ActiveJob::Base.queue_adapter = :sidekiq
ActiveJob::Base.logger = Logger.new(nil)
Sidekiq.options[:poll_interval_average] = Float(ENV.fetch("INTEROP_POLL_S", "1"))
Sidekiq.options[:max_retries] = 25

module Interop
  RAN = "interop:ran"

  # A JSON description of a Ruby value that keeps the type the job saw.
  def self.describe(value)
    case value
    when nil, true, false, Integer, Float, String
      value
    when Symbol
      {"t" => "Symbol", "v" => value.to_s}
    when ActiveSupport::HashWithIndifferentAccess
      {"t" => "HashWithIndifferentAccess", "v" => value.to_h { |k, v| [k.to_s, describe(v)] }}
    when Hash
      {"t" => "Hash", "v" => value.to_h { |k, v| [k.to_s, describe(v)] },
       "symbol_keys" => value.keys.select { |k| k.is_a?(Symbol) }.map(&:to_s)}
    when Array
      value.map { |v| describe(v) }
    when ActiveSupport::TimeWithZone
      {"t" => "TimeWithZone", "v" => value.iso8601(6), "zone" => value.time_zone.name}
    when DateTime
      {"t" => "DateTime", "v" => value.iso8601(6)}
    when Time
      {"t" => "Time", "v" => value.iso8601(6)}
    when Date
      {"t" => "Date", "v" => value.iso8601}
    when ActiveSupport::Duration
      {"t" => "Duration", "v" => value.to_i, "parts" => value.parts.to_h { |k, v| [k.to_s, v] }}
    when BigDecimal
      {"t" => "BigDecimal", "v" => value.to_s}
    when Model
      {"t" => "Model", "v" => value.id}
    else
      {"t" => value.class.name, "v" => value.to_s}
    end
  end

  def self.record(entry)
    Sidekiq.redis { |c| c.rpush(RAN, JSON.generate(entry)) }
  end
end

# A stand-in for an ActiveRecord model: enough for GlobalID to locate it.
class Model
  include GlobalID::Identification
  attr_reader :id

  def initialize(id)
    @id = id.to_s
  end

  def self.find(id)
    new(id)
  end
end

# Ruby classes that Ruby runs; each records its arguments exactly as it got them.
class RubyRecordJob
  include Sidekiq::Worker
  sidekiq_options queue: "rb"

  def perform(*args)
    Interop.record("class" => self.class.name, "jid" => jid, "args" => args)
  end
end

# Fails with RuntimeError "boom" while the Redis flag interop:fail:<class> is set.
class FailJob
  include Sidekiq::Worker
  sidekiq_options queue: "rb", retry: 1, backtrace: 3

  def perform(*args)
    Interop.record("class" => self.class.name, "jid" => jid, "args" => args)
    raise "boom" if Sidekiq.redis { |c| c.get("interop:fail:FailJob") }
  end
end

# Sleeps, to hold a Sidekiq thread busy (reliable-fetch and benchmark scenarios).
class SleepJob
  include Sidekiq::Worker
  sidekiq_options queue: "rb"

  def perform(seconds)
    Interop.record("class" => self.class.name, "jid" => jid, "args" => [seconds], "phase" => "start")
    sleep seconds
    Interop.record("class" => self.class.name, "jid" => jid, "args" => [seconds], "phase" => "end")
  end
end

# A Python job seen from Ruby: a stub class gives Ruby callers perform_async & co; its
# queue is served by Conveyor only, so this perform never runs.
class HardWorkJob
  include Sidekiq::Worker
  sidekiq_options queue: "py"

  def perform(*)
    raise NotImplementedError, "HardWorkJob runs in Python"
  end
end

# ActiveJob classes. RubyAjJob runs here; PyAjJob is run by Conveyor (queue "py").
class RubyAjJob < ActiveJob::Base
  queue_as :rb

  def perform(*args, **kwargs)
    Interop.record("class" => self.class.name, "job_id" => job_id,
                   "provider_job_id" => provider_job_id, "executions" => executions,
                   "args" => args.map { |a| Interop.describe(a) },
                   "kwargs" => kwargs.to_h { |k, v| [k.to_s, Interop.describe(v)] })
  end
end

class PyAjJob < ActiveJob::Base
  queue_as :py

  def perform(*)
    raise NotImplementedError, "PyAjJob runs in Python"
  end
end
