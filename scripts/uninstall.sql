-- Removes Conveyor from a database: cron jobs first (so nothing fires half-way), then the
-- pgmq queues it created, its RPCs and tables in public, the private `conveyor` schema, and
-- the pre-request setting on authenticator. THIS DELETES ALL JOBS AND THEIR HISTORY.
--
--   psql "$SUPABASE_DB_URL" -v ON_ERROR_STOP=1 -f scripts/uninstall.sql
--
-- Left in place on purpose: the extensions (pg_cron, pgmq, pg_net, Vault) and the Vault
-- secrets `project_url` / `service_role_key`, which other code of yours may use; drop them
-- yourself if not (statements at the end, commented out). The migration history in
-- supabase_migrations.schema_migrations is cleared of Conveyor's versions so a later
-- `supabase db push` would install it again.
--
-- tests/uninstall_test.ts runs this on a fully migrated database and checks nothing of
-- Conveyor is left: when you add an object in a migration, add it here too.

begin;

-- 1. Scheduled work.
do $$
declare
  v_job text;
begin
  if to_regclass('cron.job') is not null then
    for v_job in
      select jobname from cron.job
      where jobname like 'conveyor-%' or jobname = 'planperfect-content-queue-dispatcher'
    loop
      perform cron.unschedule(v_job);
    end loop;
  end if;
end
$$;

-- 2. The pgmq queues of every job kind (three tiers each) and the dead-letter queue.
do $$
declare
  v_queue text;
begin
  if to_regclass('conveyor.job_kinds') is not null and to_regclass('pgmq.meta') is not null then
    for v_queue in
      select m.queue_name from pgmq.meta m
      where m.queue_name = 'q_dlq'
         or m.queue_name in (select k.queue_name || t
                             from conveyor.job_kinds k, unnest(array['', '_fast', '_bulk']) t)
    loop
      perform pgmq.drop_queue(v_queue);
    end loop;
  end if;
end
$$;

-- 3. RPCs in public.
drop function if exists
  public.capture_queue_metrics(timestamptz),
  public.claim_content_stage(text, text, uuid, integer, integer, timestamptz),
  public.claim_jobs(text, text, integer, integer, timestamptz, jsonb),
  public.close_kick_window(text, bigint),
  public.complete_job(uuid, uuid, jsonb),
  public.content_stage_next_ready_at(text),
  public.conveyor_health(),
  public.evaluate_alerts(timestamptz),
  public.extend_content_stages(text, jsonb, integer),
  public.extend_jobs(text, jsonb, integer, uuid),
  public.fail_job(uuid, uuid, text, jsonb),
  public.finish_invocation(uuid, jsonb),
  public.fn_pgqueuer_enqueue(text, bytea, integer, interval, text, jsonb),
  public.get_content_stage_backlog(timestamptz),
  public.get_dispatch_backlog(timestamptz),
  public.inspect_content_job(uuid),
  public.inspect_dead_letter_job(uuid),
  public.list_dead_letter_jobs(uuid, text, boolean, timestamptz, integer),
  public.materialise_schedules(timestamptz, integer),
  public.operator_alerts(integer),
  public.operator_concurrency_keys(integer),
  public.operator_configure_target(text, boolean, integer, integer),
  public.operator_dashboard(integer, integer),
  public.operator_dead_letters(integer),
  public.operator_events(bigint, bigint, integer, text),
  public.operator_failed_content_jobs(integer),
  public.operator_find_jobs(text, integer),
  public.operator_metrics(),
  public.operator_queues(integer),
  public.operator_rate_limiters(integer),
  public.operator_set_concurrency_limit(text, integer, text, uuid),
  public.operator_set_tenant_weight(uuid, numeric),
  public.operator_stage_errors(integer),
  public.operator_stages(integer),
  public.operator_tenants(integer),
  public.outbox_write(uuid, uuid, text, text, text, text, text, text, jsonb),
  public.process_dead_letters(text, integer, timestamptz),
  public.queue_content_job(jsonb),
  public.queue_job(jsonb),
  public.queue_jobs(jsonb),
  public.queue_next_due_at(text),
  public.queue_stats(interval),
  public.raise_dead_letter_alert(uuid, text, text, timestamptz),
  public.record_enforcement_decision(uuid, uuid, text, text, jsonb, jsonb),
  public.redrive_content_job(uuid),
  public.redrive_content_jobs(text, integer),
  public.redrive_dead_job(uuid),
  public.redrive_dead_letter_jobs(uuid, text, integer),
  public.release_content_stages(text, jsonb),
  public.release_jobs(text, jsonb),
  public.settle_and_claim_jobs(text, jsonb, text, integer, integer, jsonb, timestamptz, uuid),
  public.settle_content_stages(text, jsonb, jsonb, timestamptz),
  public.settle_jobs(text, jsonb, jsonb, timestamptz),
  public.start_invocation(uuid, text),
  public.trigger_content_worker(text, integer, integer, text),
  public.trigger_queue_worker(text, integer, integer, text)
  cascade;

-- 4. Tables in public, dependants first (tenants last: everything references it).
drop table if exists
  public.content_exports, public.content_job_events, public.content_job_stages,
  public.content_jobs, public.content_stage_config,
  public.outbox_messages, public.enforcement_decisions,
  public.alert_history, public.queue_metrics, public.rate_limiters, public.rate_limits,
  public.schedules, public.queues,
  public.dead_letter_jobs, public.critical_jobs, public.idempotency_keys, public.job_events,
  public.jobs, public.tenants
  cascade;

-- 5. The private schema (settings, job kinds, invocations, helpers, types).
drop schema if exists conveyor cascade;

-- 6. PostgREST's pre-request function pointed into conveyor.
alter role authenticator reset pgrst.db_pre_request;
notify pgrst, 'reload config';
notify pgrst, 'reload schema';

-- 7. Migration history, so the CLI knows Conveyor is gone: this repository's versions, and
-- in a project Conveyor was installed into (`deno task conveyor install`, docs/install.md)
-- its files `<version>_conveyor_<name>.sql`, which the CLI records under the name
-- `conveyor_<name>` (also the kinds `add kind` made, whose queues went with step 2).
delete from supabase_migrations.schema_migrations
where version in ('0001', '0010', '0011', '0020', '0050', '0051', '0052', '0053', '0054',
                  '0055', '0056', '0060', '0061', '0069', '0071', '20251020120000',
                  '20251101000000', '20261207110000', '20261207120000', '20261207120100', '20261207120200',
                  '20261207121000', '20261207130000', '20261207131000',
                  '20261207140100', '20261207140200',
                  '20261207140300', '20261207160200', '20261207170100',
                  '20261207230100')
   or name like 'conveyor\_%';

commit;

-- Optional, if nothing else of yours uses them:
-- select vault.update_secret(id, new_name => name || '.removed') from vault.secrets
--   where name in ('project_url', 'service_role_key');
-- drop extension if exists pg_net; drop extension if exists pgmq cascade;
