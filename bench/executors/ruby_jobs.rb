# frozen_string_literal: true

# Jobs for the executor benchmarks on the Ruby sidecar.
class Noop
  def perform; end
end

class Sleep10
  def perform
    sleep 0.01
  end
end
