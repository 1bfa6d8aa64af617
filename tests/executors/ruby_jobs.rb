# frozen_string_literal: true

# Ruby job classes for the http executor tests, under the names tests/executors/jobs.py uses.
require "fiddle"
require "json"
require "sidekiq"

# A plain Ruby class.
class Echo
  def perform(*args, **kwargs)
    kwargs.empty? ? args : [args, kwargs.transform_keys(&:to_s)]
  end
end

# Sidekiq-style classes.
class Boom
  include Sidekiq::Job
  sidekiq_options retry: 3

  def perform(message)
    raise ArgumentError, message
  end
end

class Sleeper
  include Sidekiq::Worker

  def perform(seconds, marker = nil)
    File.write(marker, Process.pid.to_s) if marker
    sleep seconds
    seconds
  end
end

class Interval
  def perform(seconds)
    start = Time.now.to_f
    sleep seconds
    [start, Time.now.to_f]
  end
end

class Exit
  def perform(code)
    exit!(code)
  end
end

class Segfault
  def perform
    Fiddle::Pointer.new(8)[0] # not NULL, which Fiddle checks: a real SIGSEGV
  end
end

class Hog
  def perform
    raise NoMemoryError, "failed to allocate memory"
  end
end

class Pid
  def perform
    Process.pid
  end
end

class WhoAmI
  include Sidekiq::Job

  def perform
    [jid, self.class.name, self.class.get_sidekiq_options["retry"]]
  end
end

# For test_ruby_end_to_end.py: a Sidekiq job a Ruby app enqueues with Sidekiq::Client.push; its
# side effect (a file naming what it received) is what the test checks.
class GreetingJob
  include Sidekiq::Job
  sidekiq_options queue: "ruby_e2e"

  def perform(name, path)
    File.write(path, JSON.generate({ "greeting" => "hello #{name}", "jid" => jid,
                                     "class" => self.class.name, "pid" => Process.pid }))
    "greeted #{name}"
  end
end
