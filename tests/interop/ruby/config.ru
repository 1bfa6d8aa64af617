# The Sidekiq 6.4.1 Web UI over the interop Redis: `rackup -s webrick -p PORT config.ru`.
# A cookie session is required by Sidekiq::Web's CSRF protection.
require_relative "app"
require "securerandom"
require "rack/session/cookie"
require "sidekiq/web"

use Rack::Session::Cookie, secret: SecureRandom.hex(32), same_site: true, max_age: 86_400
run Sidekiq::Web
