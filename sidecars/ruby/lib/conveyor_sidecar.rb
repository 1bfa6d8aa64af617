# frozen_string_literal: true

# A Conveyor sidecar in Ruby: a Rack app that runs Ruby job classes for a Python worker's
# `http` executor, by the protocol in docs/sidecar-protocol.md (POST /v1/jobs, GET /v1/health,
# DELETE /v1/jobs/:jid).
#
# Job classes are plain Ruby classes or Sidekiq-style classes (`include Sidekiq::Job` or
# `Sidekiq::Worker`) with an instance method `perform`; each request runs
# `Klass.new.perform(*args)`. Only classes from the job files given at start (or registered with
# `ConveyorSidecar.registry.register`) can run: a class name from a request is looked up in that
# registry, never resolved as a constant.
#
# Needs only Ruby's standard library and the `rack` gem (Debian: ruby, ruby-rack, ruby-webrick).
# When the `sidekiq` gem is missing, a small stand-in for Sidekiq::Job is defined so that
# Sidekiq-style classes still load.

require "json"
require "rack"
require "timeout"

begin
  require "sidekiq"
rescue LoadError
  module Sidekiq
    # Just enough of Sidekiq::Job for job classes to load and run without the gem.
    module Job
      def self.included(base)
        base.extend(ClassMethods)
      end

      module ClassMethods
        def sidekiq_options(opts = {})
          @sidekiq_options = get_sidekiq_options.merge(opts.transform_keys(&:to_s))
        end

        def get_sidekiq_options
          @sidekiq_options || {}
        end
      end

      attr_accessor :jid
    end
    Worker = Job
  end
  $LOADED_FEATURES << "sidekiq.rb"
end

module ConveyorSidecar
  PROTOCOL_VERSION = 1
  MAX_REQUEST_BYTES = 16 * 1024 * 1024
  MAX_BACKTRACE_LINES = 50
  REPLAY_CACHE_SIZE = 1024

  class JobTimeout < StandardError; end
  class Cancelled < StandardError; end

  # The job classes this sidecar may run, by name.
  class Registry
    def initialize
      @classes = {}
    end

    def register(klass, name = klass.name)
      @classes[name] = klass
    end

    def [](name)
      @classes[name]
    end

    def names
      @classes.keys.sort
    end

    # Load job files and register every class whose `perform` is defined in one of them.
    def load_files(paths)
      files = paths.map { |p| File.expand_path(p) }
      files.each { |f| require f }
      ObjectSpace.each_object(Class) do |klass|
        next unless klass.name && klass.method_defined?(:perform)

        where = klass.instance_method(:perform).source_location&.first
        register(klass) if where && files.include?(File.expand_path(where))
      end
      self
    end
  end

  def self.registry
    @registry ||= Registry.new
  end

  # The Rack application.
  class App
    JSON_TYPE = { "content-type" => "application/json" }.freeze

    def initialize(registry = ConveyorSidecar.registry)
      @registry = registry
      @running = {}
      @replies = {}
      @lock = Mutex.new
    end

    def call(env)
      req = Rack::Request.new(env)
      path = req.path_info
      if req.get? && path == "/v1/health"
        health
      elsif req.post? && path == "/v1/jobs"
        run_job(req)
      elsif req.delete? && (m = %r{\A/v1/jobs/([^/]+)\z}.match(path))
        cancel(m[1])
      else
        error(404, "NotFound", "no route for #{req.request_method} #{path}")
      end
    end

    private

    def respond(status, body, extra = {})
      json = body.is_a?(String) ? body : JSON.generate(body)
      [status, JSON_TYPE.merge("content-length" => json.bytesize.to_s, **extra), [json]]
    end

    def error(status, error_class, message, jid = "")
      respond(status, { status: "error", jid: jid, error_class: error_class,
                        error_message: message, backtrace: [] })
    end

    def health
      respond(200, { status: "ok", protocol: PROTOCOL_VERSION, pid: Process.pid,
                     jobs: @registry.names, in_flight: @lock.synchronize { @running.size } })
    end

    def run_job(req)
      raw = req.body.read(MAX_REQUEST_BYTES + 1) || ""
      return error(413, "RequestTooLarge", "the body is over #{MAX_REQUEST_BYTES} bytes") if raw.bytesize > MAX_REQUEST_BYTES

      job = parse(raw)
      return error(400, "BadRequest", job) if job.is_a?(String)

      jid = job["jid"].to_s
      attempt = (job["attempt"] || 1).to_i
      klass = @registry[job["class"]]
      unless klass
        return error(404, "UnknownJobType",
                     "job type #{job['class'].inspect} is not registered; registered types: #{@registry.names.join(', ')}", jid)
      end
      start(klass, job, jid, attempt)
    end

    def start(klass, job, jid, attempt)
      @lock.synchronize do
        cached = @replies[[jid, attempt]] unless jid.empty?
        return respond(200, cached, "conveyor-replayed" => "true") if cached
        return error(409, "JobAlreadyRunning", "job #{jid} is already running here", jid) if !jid.empty? && @running.key?(jid)

        @running[jid] = Thread.current unless jid.empty?
      end
      body = JSON.generate(perform(klass, job, jid))
      @lock.synchronize do
        @running.delete(jid)
        unless jid.empty?
          @replies[[jid, attempt]] = body
          @replies.shift while @replies.size > REPLAY_CACHE_SIZE
        end
      end
      respond(200, body)
    end

    def parse(raw)
      job = JSON.parse(raw)
      return "the body must be a JSON object" unless job.is_a?(Hash)
      return "the field 'class' is missing" unless job["class"].is_a?(String) && !job["class"].empty?
      return "the field 'args' is missing" unless job["args"].is_a?(Array)
      return "the field 'kwargs' has the wrong type" unless job["kwargs"].nil? || job["kwargs"].is_a?(Hash)
      return "the field 'timeout' has the wrong type" unless job["timeout"].nil? || job["timeout"].is_a?(Numeric)

      job
    rescue JSON::ParserError => e
      "the body is not JSON: #{e.message}"
    end

    def perform(klass, job, jid)
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      value = with_timeout(job["timeout"], job["class"]) { invoke(klass, job, jid) }
      { status: "ok", jid: jid, result: ConveyorSidecar.json_safe(value), duration_s: elapsed(started) }
    rescue Exception => e # rubocop:disable Lint/RescueException -- a job's failure must never kill the server
      raise if e.is_a?(SignalException)

      { status: "error", jid: jid, error_class: error_class_of(e), error_message: e.message,
        backtrace: ConveyorSidecar.job_backtrace(e), duration_s: elapsed(started) }
    end

    def invoke(klass, job, jid)
      instance = klass.new
      instance.jid = jid if instance.respond_to?(:jid=)
      kwargs = job["kwargs"] || {}
      return instance.perform(*job["args"]) if kwargs.empty?

      instance.perform(*job["args"], **kwargs.transform_keys(&:to_sym))
    end

    def with_timeout(seconds, name, &block)
      return yield unless seconds&.positive?

      Timeout.timeout(seconds, JobTimeout, "job #{name.inspect} ran past its timeout of #{seconds}s", &block)
    end

    def error_class_of(exc)
      case exc
      when JobTimeout then "JobTimeout"
      when Cancelled then "Cancelled"
      else exc.class.name
      end
    end

    def elapsed(started)
      (Process.clock_gettime(Process::CLOCK_MONOTONIC) - started).round(6)
    end

    def cancel(jid)
      thread = @lock.synchronize { @running[jid] }
      return respond(404, { status: "unknown", jid: jid }) unless thread

      thread.raise(Cancelled, "the job was cancelled")
      respond(202, { status: "cancelling", jid: jid })
    end
  end

  # The frames of the job's own code, outermost first and innermost last (the protocol's
  # order; Ruby prints innermost first), without this server's frames below them.
  def self.job_backtrace(exc)
    lines = exc.backtrace || []
    own = lines.take_while { |line| !line.start_with?(__FILE__) }
    (own.empty? ? lines : own).first(MAX_BACKTRACE_LINES).reverse
  end

  # A result as JSON can carry it; anything else (a model object, say) becomes nil, since
  # Sidekiq jobs' return values are usually not meant as results.
  def self.json_safe(value)
    case value
    when nil, true, false, String, Integer then value
    when Float then value.finite? ? value : nil
    when Symbol then value.to_s
    when Array then value.map { |v| json_safe(v) }
    when Hash then value.to_h { |k, v| [k.to_s, json_safe(v)] }
    end
  end
end
