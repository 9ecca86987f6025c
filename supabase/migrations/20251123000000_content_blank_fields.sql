-- Fix (20251020120000): queue_content_job took text made only of tabs or newlines as an
-- idempotency key, a topic, an audience, a title or a keyword, while the same made of spaces
-- is refused: btrim() trims spaces only. Found by the reliability suite's fuzzer
-- (tests/reliability_fuzz_test.ts). Text with no visible character now counts as empty,
-- whatever the whitespace. The function is otherwise the seed migration's, unchanged
-- (CREATE OR REPLACE keeps its grants and comment).

create or replace function public.queue_content_job(jsonb) returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  p alias for $1;
  c_fields constant text[] := array['idempotency_key', 'brief', 'max_attempts'];
  v_key text;
  v_brief jsonb;
  v_extra text;
  v_size int;
  v_limit bigint := conveyor.setting_int('content_brief_max_bytes');
  v_max int := conveyor.setting_int('content_max_attempts')::int;
  v_id uuid;
begin
  if p is null or jsonb_typeof(p) <> 'object' then
    raise exception 'queue_content_job: the body must be a JSON object';
  end if;
  select k into v_extra from jsonb_object_keys(p) k where k <> all (c_fields) order by k limit 1;
  if v_extra is not null then
    raise exception 'queue_content_job: unknown field "%"', v_extra
      using hint = 'accepted fields: ' || array_to_string(c_fields, ', ');
  end if;
  if jsonb_typeof(p -> 'idempotency_key') is distinct from 'string'
     or (p ->> 'idempotency_key') !~ '\S' then
    raise exception 'queue_content_job: missing idempotency_key';
  end if;
  v_key := p ->> 'idempotency_key';
  if length(v_key) > 255 then
    raise exception 'queue_content_job: idempotency_key is longer than 255 characters';
  end if;
  if coalesce(jsonb_typeof(p -> 'brief'), 'null') = 'null' then
    raise exception 'queue_content_job: missing brief';
  end if;
  v_brief := p -> 'brief';
  if jsonb_typeof(v_brief) <> 'object' then
    raise exception 'queue_content_job: brief must be a JSON object';
  end if;
  v_size := octet_length(v_brief::text);
  if v_size > v_limit then
    raise exception 'queue_content_job: brief too large (% bytes, the limit is % bytes)', v_size, v_limit;
  end if;
  if jsonb_typeof(v_brief -> 'topic') is distinct from 'string' or (v_brief ->> 'topic') !~ '\S' then
    raise exception 'queue_content_job: brief.topic is required (a non-empty string)';
  end if;
  if length(v_brief ->> 'topic') > 300 then
    raise exception 'queue_content_job: brief.topic is longer than 300 characters';
  end if;
  if coalesce(jsonb_typeof(v_brief -> 'audience'), 'null') <> 'null'
     and (jsonb_typeof(v_brief -> 'audience') <> 'string' or (v_brief ->> 'audience') !~ '\S'
          or length(v_brief ->> 'audience') > 200) then
    raise exception 'queue_content_job: brief.audience must be a non-empty string of at most 200 characters';
  end if;
  if coalesce(jsonb_typeof(v_brief -> 'title'), 'null') <> 'null'
     and (jsonb_typeof(v_brief -> 'title') <> 'string' or (v_brief ->> 'title') !~ '\S'
          or length(v_brief ->> 'title') > 200) then
    raise exception 'queue_content_job: brief.title must be a non-empty string of at most 200 characters';
  end if;
  if coalesce(jsonb_typeof(v_brief -> 'keywords'), 'null') <> 'null'
     and (jsonb_typeof(v_brief -> 'keywords') <> 'array'
          or jsonb_array_length(v_brief -> 'keywords') > 25
          or exists (select 1 from jsonb_array_elements(v_brief -> 'keywords') e
                     where jsonb_typeof(e) <> 'string' or (e #>> '{}') !~ '\S'
                        or length(e #>> '{}') > 100)) then
    raise exception 'queue_content_job: brief.keywords must be an array of at most 25 non-empty strings (each at most 100 characters)';
  end if;
  if coalesce(jsonb_typeof(v_brief -> 'banned_words'), 'null') <> 'null'
     and (jsonb_typeof(v_brief -> 'banned_words') <> 'array'
          or jsonb_array_length(v_brief -> 'banned_words') > 100
          or exists (select 1 from jsonb_array_elements(v_brief -> 'banned_words') e
                     where jsonb_typeof(e) <> 'string' or (e #>> '{}') !~ '\S'
                        or length(e #>> '{}') > 100)) then
    raise exception 'queue_content_job: brief.banned_words must be an array of at most 100 non-empty strings (each at most 100 characters)';
  end if;
  if coalesce(jsonb_typeof(v_brief -> 'length'), 'null') <> 'null'
     and not (
       (jsonb_typeof(v_brief -> 'length') = 'string' and v_brief ->> 'length' in ('short', 'medium', 'long'))
       or (jsonb_typeof(v_brief -> 'length') = 'number'
           and (v_brief ->> 'length')::numeric = trunc((v_brief ->> 'length')::numeric)
           and (v_brief ->> 'length')::numeric between 100 and 5000)) then
    raise exception 'queue_content_job: brief.length must be "short", "medium", "long" or a whole number of words between 100 and 5000';
  end if;
  if p ? 'max_attempts' then
    if jsonb_typeof(p -> 'max_attempts') <> 'number'
       or (p ->> 'max_attempts')::numeric <> trunc((p ->> 'max_attempts')::numeric)
       or (p ->> 'max_attempts')::numeric not between 1 and 10 then
      raise exception 'queue_content_job: max_attempts must be a whole number between 1 and 10';
    end if;
    v_max := (p ->> 'max_attempts')::int;
  end if;

  -- Claim the key first: ON CONFLICT waits for a concurrent holder of the same key to commit
  -- or roll back, so of N identical calls exactly one creates the job (race-free at READ
  -- COMMITTED) and the others return its id.
  insert into public.content_jobs (idempotency_key, brief, max_attempts)
  values (v_key, v_brief, v_max)
  on conflict (idempotency_key) do nothing
  returning id into v_id;
  if v_id is null then
    select j.id into v_id from public.content_jobs j where j.idempotency_key = v_key;
    return v_id;
  end if;

  insert into public.content_job_stages (job_id, stage, max_attempts)
  values (v_id, 'research', v_max);
  update public.content_jobs set current_stage = 'research' where id = v_id;
  perform conveyor.content_event(v_id, 'research', 'queued', 'job created; research is ready',
    jsonb_build_object('idempotency_key', v_key));
  perform conveyor.kick('content:research');
  return v_id;
end
$$;
