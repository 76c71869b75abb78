"""The service: an admin web page and an HTTP API over the exporter (docs/service.md).

A thin door over the library: :mod:`.config` reads the TOML configuration, :mod:`.state`
holds accounts, sessions, tokens, jobs and the audit trail in SQLite, :mod:`.auth` checks
passwords, tokens and sessions, :mod:`.audit` keeps the hash chain, :mod:`.jobs` runs exports
in worker processes (:mod:`.worker`), :mod:`.operations` is what the API (:mod:`.api`) and
the pages (:mod:`.pages`) both do, and :mod:`.app` puts them together. Needs
``sqlsnap[service]``.
"""
