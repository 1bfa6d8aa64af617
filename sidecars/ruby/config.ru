# frozen_string_literal: true

# rackup config.ru -p 9292 with CONVEYOR_JOB_FILES=app/jobs/a.rb:app/jobs/b.rb
require_relative "lib/conveyor_sidecar"

ConveyorSidecar.registry.load_files(ENV.fetch("CONVEYOR_JOB_FILES", "").split(":").reject(&:empty?))
run ConveyorSidecar::App.new
