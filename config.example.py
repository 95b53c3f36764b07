"""Settings for the conference line: copy to config.py (kept out of git) and edit.

Every name here can also be set in the environment or in a .env file, which win over this file.
Leave the Twilio credentials unset to run in local mode: no Twilio account needed, codes are
printed to the console, and the example participants below are loaded into an empty database.
"""

# Twilio credentials (Console > Account info). The auth token also checks webhook signatures.
# With these set, SECRET_KEY is required and no example data is ever loaded.
TWILIO_ACCOUNT_SID = None  # "ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
TWILIO_AUTH_TOKEN = None

# Twilio Verify service SID ("VA..."): Verify makes, sends and checks the codes.
# Unset: the built-in provider makes codes here and texts them from TWILIO_PHONE_NUMBER.
VERIFY_SERVICE_SID = None

# A second Verify service SID ("VA...") for admin console sign-in codes. Verify keeps one pending
# code per number in a service, so sign-in cannot share the line's service without replacing a
# caller's code. Unset: sign-in codes are made here and texted (or called) from
# TWILIO_PHONE_NUMBER. With neither set, the line still runs (on VERIFY_SERVICE_SID), but console
# sign-in is off: one warning line at start-up, and the sign-in page says what to set.
ADMIN_VERIFY_SERVICE_SID = None

# The line's number in E.164 form; the sender of built-in SMS and voice codes. Required without
# VERIFY_SERVICE_SID; with it, needed only to text or call console sign-in codes.
TWILIO_PHONE_NUMBER = None  # "+18005550100"

# Base URL replacing https://<product>.twilio.com, for a fake Twilio in tests and benchmarks.
TWILIO_API_URL = None

# Seconds before a Twilio REST call gives up (Twilio drops a webhook after 15 s).
TWILIO_TIMEOUT_SECONDS = 5

# SQLAlchemy URL: sqlite:///path.db, postgres://... or postgresql://...
# Unset: a SQLite file in the instance folder.
DATABASE_URL = None

# Optional Redis for HTTP rate limits shared across instances.
REDIS_URL = None

# Signs sessions and CSRF tokens and keys the code hashes. Required with Twilio credentials:
#   python -c "import secrets; print(secrets.token_hex(32))"
SECRET_KEY = None

# The https URL Twilio calls, when the app sits behind a TLS proxy or a tunnel such as ngrok.
# Signatures are checked against this + path + query.
PUBLIC_BASE_URL = None

# How many proxies in front of the app set X-Forwarded-For/-Proto/-Host (1 behind Heroku's router,
# a load balancer or ngrok). 0 trusts no such header. With it set, rate limits see the caller's
# address and signatures can be checked without PUBLIC_BASE_URL.
PROXY_HOPS = 0

# Built-in provider: code lifetime in seconds (1 to 600).
OTP_TTL_SECONDS = 600
# Wrong codes before a number is locked out, and the lockout's length in seconds.
MAX_ATTEMPTS = 3
LOCKOUT_SECONDS = 600

# Hours an admin console sign-in lasts before the admin must sign in again (1 to 168).
ADMIN_SESSION_HOURS = 8

# Log lines on stderr. LOG_LEVEL, the lowest level logged: DEBUG, INFO, WARNING, ERROR or CRITICAL
# (at INFO, other libraries' lines show only from WARNING up). LOG_FORMAT: "text" for people, or
# "json" for one JSON object per line, for a log collector.
LOG_LEVEL = "INFO"
LOG_FORMAT = "text"

# The seed tutorial's participant list; loaded into an empty database (by init-db, or at start in
# local mode) into the room "main". Manage the list afterwards with `flask --app ivr participants`.
# With neither set (local mode without a config.py), the same callers load, plus an example room
# "night" on the line +18005550102, open Sundays 03:00-04:00 Berlin time: a call to it at almost
# any hour meets a closed room (README: Opening hours). Rooms' hours, zones and languages live in
# the database: `flask --app ivr rooms ...` or the admin console.
MODERATOR = "+18005551234"
KNOWN_PARTICIPANTS = {
    "+18005559876": "Blathers",
    "+18005554321": "Mabel",
    "+18005556789": "Tommy",
}

# Prometheus metrics at GET /metrics, readable with "Authorization: Bearer <this>" only.
# At least 16 characters: python -c "import secrets; print(secrets.token_urlsafe(32))"
# Unset: the line keeps no metrics and /metrics is 404.
METRICS_TOKEN = None
