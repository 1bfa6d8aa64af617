# The Sidekiq side of bench/peers/apps/driver.py: the same commands, options and JSON output.
#   ruby driver.rb enqueue --kind noop --n 1000 --mode single|bulk|fill
#   ruby driver.rb latency --samples 100 --gap-ms 50
require "json"
require_relative "app"

BULK_CHUNK = 1000
CLASSES = { "noop" => NoopJob, "sleep" => SleepJob, "stamp" => StampJob, "second" => SecondJob }.freeze

def options(argv)
  opts = { "kind" => "noop", "n" => "1000", "mode" => "single", "samples" => "100", "gap-ms" => "50" }
  argv.each_slice(2) { |k, v| opts[k.sub(/\A--/, "")] = v }
  opts
end

def job_args(kind, n)
  kind == "sleep" ? Array.new(n, 10) : (0...n).to_a
end

def enqueue(opts)
  klass = CLASSES.fetch(opts["kind"])
  n = opts["n"].to_i
  args = job_args(opts["kind"], n)
  started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  if opts["mode"] == "single"
    args.each { |a| klass.perform_async(a) }
  else
    args.each_slice(BULK_CHUNK) do |chunk|
      Sidekiq::Client.push_bulk("class" => klass, "args" => chunk.map { |a| [a] })
    end
  end
  seconds = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
  { "n" => n, "seconds" => seconds, "per_s" => n / seconds }
end

def latency(opts)
  out = []
  Marks.with do |r|
    r.del("bench:lat")
    StampJob.perform_async(Time.now.to_f)
    return { "error" => "the worker never ran the warm-up job" } unless r.blpop("bench:lat", timeout: 120)
    opts["samples"].to_i.times do
      sleep(opts["gap-ms"].to_f / 1000)
      StampJob.perform_async(Time.now.to_f)
      got = r.blpop("bench:lat", timeout: 30)
      return { "error" => "no pickup within 30s", "latencies_ms" => out } unless got
      out << got[1].to_f * 1000
    end
  end
  { "latencies_ms" => out }
end

command = ARGV.shift
result = command == "latency" ? latency(options(ARGV)) : enqueue(options(ARGV))
puts JSON.generate(result)
