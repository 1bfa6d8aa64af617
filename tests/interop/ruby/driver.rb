# One-shot client commands for the Python tests: `ruby driver.rb COMMAND < params.json`.
# Prints one JSON document: the command's result. Uses only Sidekiq's public client and API
# (Sidekiq::Client, Worker.perform_*, ActiveJob perform_later, Sidekiq::*Set, ProcessSet, ...).
require_relative "app"
require "sidekiq/job_retry"

Sidekiq.logger.level = Logger::ERROR  # keep stdout for the result; warnings are not results

# Every ActiveJob argument type Rails 6.1 serializes, built on the Ruby side.
def all_types_arguments
  [
    "s", 1, 2.5, nil, true,
    :sym,
    {a: 1, "b" => 2},
    {"x" => 1}.with_indifferent_access,
    Time.utc(2024, 1, 2, 3, 4, 5, 123456),
    Time.zone.local(2026, 11, 22, 5, 15, 25),
    DateTime.new(2024, 1, 2, 3, 4, 5, "+02:00"),
    Date.new(2024, 1, 2),
    5.minutes,
    BigDecimal("1.5"),
    Model.new(42),
    [:nested, {deep: [1, {z: :zz}]}]
  ]
end

def all_types_kwargs
  {kw1: "v", when: Date.new(2030, 5, 6)}
end

def set_of(name)
  {"retry" => Sidekiq::RetrySet, "dead" => Sidekiq::DeadSet,
   "schedule" => Sidekiq::ScheduledSet}.fetch(name).new
end

def entry_hash(e)
  {"score" => e.score, "value" => e.value, "item" => e.item, "jid" => e.jid,
   "display_class" => e.display_class, "error_backtrace" => e.error_backtrace}
end

COMMANDS = {
  "push" => ->(p) { Sidekiq::Client.push(p) },
  "push_bulk" => ->(p) { Sidekiq::Client.push_bulk(p) },
  "perform_async" => ->(p) { Object.const_get(p["class"]).perform_async(*p["args"]) },
  "perform_in" => ->(p) { Object.const_get(p["class"]).perform_in(p["seconds"], *p["args"]) },
  "perform_at" => ->(p) { Object.const_get(p["class"]).perform_at(Time.at(p["at"]), *p["args"]) },
  "aj_all_types" => lambda { |p|
    klass = Object.const_get(p["class"])
    setter = p["wait"] ? klass.set(wait: p["wait"]) : klass
    job = setter.perform_later(*all_types_arguments, **all_types_kwargs)
    {"job_id" => job.job_id, "jid" => job.provider_job_id}
  },
  # How Sidekiq 8 (its own adapter) wraps the same job: a different wrapper class name.
  "aj_wrapper8" => lambda { |p|
    job = Object.const_get(p["class"]).new(*all_types_arguments, **all_types_kwargs)
    Sidekiq::Client.push("class" => "Sidekiq::ActiveJob::Wrapper", "wrapped" => job.class.name,
                         "queue" => job.queue_name, "args" => [job.serialize])
  },
  "entries" => ->(p) { set_of(p["set"]).map { |e| entry_hash(e) } },
  "entry_action" => lambda { |p|
    e = set_of(p["set"]).find_job(p["jid"]) or raise "no #{p["jid"]} in #{p["set"]}"
    e.public_send(p["action"])
    true
  },
  "processes" => ->(_) { Sidekiq::ProcessSet.new.map { |pr| pr.instance_variable_get(:@attribs) } },
  "workset" => ->(_) { Sidekiq::WorkSet.new.map { |pid, tid, work| [pid, tid, work] } },
  "stats" => lambda { |_|
    s = Sidekiq::Stats.new
    {"processed" => s.processed, "failed" => s.failed, "enqueued" => s.enqueued,
     "scheduled_size" => s.scheduled_size, "retry_size" => s.retry_size,
     "dead_size" => s.dead_size, "processes_size" => s.processes_size,
     "workers_size" => s.workers_size, "queues" => s.queues}
  },
  "queues" => ->(_) { Sidekiq::Queue.all.map { |q| {"name" => q.name, "size" => q.size} } },
  "signal" => lambda { |p|
    pr = Sidekiq::ProcessSet.new.find { |x| x.identity == p["identity"] } or raise "no process"
    pr.public_send(p["action"])
    true
  },
  # Ruby's own encoding of a JSON document, for byte comparisons with Python's.
  "generate" => ->(p) { {"json" => Sidekiq.dump_json(p["value"])} },
  # error_backtrace as Sidekiq writes it, for each list of frames: JobRetry's own (private)
  # compress_backtrace, the code a failing job goes through.
  "compress_backtrace" => lambda { |p|
    retrier = Sidekiq::JobRetry.new
    p.map { |frames| retrier.send(:compress_backtrace, frames) }
  }
}

command = ARGV.fetch(0)
params = JSON.parse($stdin.read.then { |s| s.empty? ? "null" : s })
puts JSON.generate({"result" => COMMANDS.fetch(command).call(params)})
