-- The request's tenant comes ONLY from the verified JWT. PostgREST (and the local gateway)
-- runs this function after it has set request.jwt.claims from a token whose signature it
-- checked, and before the request's own query; it copies the `tenant_id` claim (top level,
-- or app_metadata.tenant_id as Supabase custom-claims hooks usually place it) into
-- app.current_tenant, which every RLS policy reads. Whatever the client puts in headers,
-- bodies or query strings never reaches app.current_tenant: clients cannot call set_config
-- (pg_catalog is not exposed) and no exposed function sets it.

create function conveyor.pre_request() returns void
language plpgsql
set search_path = ''
as $$
declare
  v_claims jsonb := nullif(current_setting('request.jwt.claims', true), '')::jsonb;
  v_tenant text;
begin
  v_tenant := coalesce(v_claims ->> 'tenant_id', v_claims -> 'app_metadata' ->> 'tenant_id');
  -- Only a well-formed uuid becomes the tenant; anything else means "no tenant".
  if v_tenant is not null
     and v_tenant !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    v_tenant := null;
  end if;
  perform set_config('app.current_tenant', coalesce(v_tenant, ''), true);
end
$$;

comment on function conveyor.pre_request() is
  'PostgREST db-pre-request: app.current_tenant := the verified JWT claim tenant_id.';

-- The API roles run it (PostgREST calls it after switching role); its schema stays
-- unexposed, so it is not an RPC.
grant usage on schema conveyor to anon, authenticated, service_role;
grant execute on function conveyor.pre_request() to anon, authenticated, service_role;

-- Hosted Supabase: PostgREST reads its pre-request function from the authenticator role's
-- settings; `notify pgrst, 'reload config'` makes it take effect without a restart.
alter role authenticator set pgrst.db_pre_request = 'conveyor.pre_request';
notify pgrst, 'reload config';
