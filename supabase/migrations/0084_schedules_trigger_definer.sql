-- Creating or re-timing a schedule through the API (service_role over REST, POST
-- /rest/v1/schedules) failed with 42501 "permission denied for function cron_next": the
-- BEFORE trigger (0071) ran with the caller's rights, and the API roles may execute nothing
-- in schema conveyor (security_lints holds that line). The trigger function now runs as its
-- owner; it reads only the row it is given and the clock, and keeps `search_path = ''`.
-- EXECUTE stays revoked from PUBLIC (0071): a trigger function cannot be called directly.
alter function conveyor.schedules_before_write() security definer;
