/**
 * The database lints Supabase runs as "Advisors" (its open-source linter, splinter), written
 * here from what each lint is documented to find. The names, levels and documentation links
 * are Supabase's, so a finding reads the same as in the dashboard; the SQL and the words are
 * ours. Not covered, because they read platform settings rather than the database:
 * `auth_allow_anonymous_sign_ins` (an Auth server setting), `public_bucket_allows_listing`
 * (Storage buckets; Conveyor creates none and the local stack has no Storage schema), and the
 * Advisors items that are not splinter lints at all (SSL enforcement, network restrictions,
 * leaked-password protection, OTP expiry, MFA, Postgres patch level).
 *
 * Every lint is one query returning `(object, detail, fix)`. It runs after the shared `ctx`
 * row (see {@link lintQuery}): `ctx.exposed` (the schemas PostgREST serves, `$1`),
 * `ctx.platform` (schemas Supabase owns: their objects are not the project's to fix) and
 * `ctx.graphql` (whether pg_graphql serves the database: installed, or not installable here
 * at all, as on the local stack, since hosted projects have it on by default).
 *
 * @module
 */

/** Severity as Supabase grades it: ERROR fails CI outright, WARN unless allow-listed. */
export type LintLevel = "ERROR" | "WARN" | "INFO";

/** One lint. */
export interface Lint {
  /** Supabase's name for it (what the dashboard and the allow-list say). */
  name: string;
  level: LintLevel;
  categories: ("SECURITY" | "PERFORMANCE")[];
  /** What it finds and why that matters, in one sentence. */
  about: string;
  /** How to fix a finding, when the query cannot say it per finding. */
  fix: string;
  /** Supabase's documentation page for it (the remediation link). */
  doc: string;
  /**
   * Reads usage statistics: on a fresh database (CI) its findings mean nothing, so CI
   * neither requires them allow-listed nor calls their allow-list entries stale.
   */
  usesStats?: boolean;
  /** Query returning rows `(object text, detail text, fix text|null)`; may use `ctx`. */
  sql: string;
}

/** Schemas the platform owns (Supabase services and pre-installed extensions). */
export const PLATFORM_SCHEMAS = [
  "_analytics",
  "_realtime",
  "auth",
  "cron",
  "extensions",
  "graphql",
  "graphql_public",
  "information_schema",
  "net",
  "pg_catalog",
  "pgbouncer",
  "pgmq",
  "pgroonga",
  "pgsodium",
  "pgsodium_masks",
  "pgtle",
  "realtime",
  "repack",
  "storage",
  "supabase_functions",
  "supabase_migrations",
  "tiger",
  "topology",
  "vault",
] as const;

/** The link Supabase gives for a lint. */
export function remediationUrl(lint: Lint): string {
  return `https://supabase.com/docs/guides/database/database-linter?lint=${lint.doc}`;
}

const literal = (s: string) => `'${s.replaceAll("'", "''")}'`;

const CTX = `with ctx as (
  select $1::text[] as exposed,
         array[${PLATFORM_SCHEMAS.map(literal).join(", ")}]::text[] as platform,
         (exists (select from pg_catalog.pg_extension where extname = 'pg_graphql')
          or not exists (select from pg_catalog.pg_available_extensions
                         where name = 'pg_graphql')) as graphql
)`;

/** The full statement for a lint: `$1` is the exposed schemas (text[]). */
export function lintQuery(lint: Lint): string {
  return `${CTX}\nselect object, detail, fix from (${lint.sql}) f order by object`;
}

// Fragments the queries share. `n` is a pg_namespace row, the oid a pg_class/pg_proc oid.
/** The schema is the project's: not the platform's, not temporary or TOAST. */
const ours = (n: string) =>
  `(${n}.nspname <> all (ctx.platform) and ${n}.nspname !~ '^(pg_temp_|pg_toast|_timescaledb_)')`;
/** The object is not part of an extension (the extension's author answers for it). */
const notFromExtension = (catalog: string, oid: string) =>
  `not exists (select from pg_catalog.pg_depend x where x.classid = '${catalog}'::regclass
                 and x.objid = ${oid} and x.deptype = 'e')`;
/** anon or authenticated may select from the relation. */
const apiReads = (oid: string) =>
  `(has_table_privilege('anon', ${oid}, 'select')
    or has_table_privilege('authenticated', ${oid}, 'select'))`;
/** The view runs with the caller's rights (security_invoker set to a true value). */
const invoker = (c: string) =>
  `exists (select from unnest(coalesce(${c}.reloptions, '{}')) o
           where o ~* '^security_invoker=' and split_part(o, '=', 2)::boolean)`;
/** "schema.relation" of a pg_class row `c` in namespace `n`. */
const rel = (n = "n", c = "c") => `format('%s.%s', ${n}.nspname, ${c}.relname)`;
/** A policy's USING and WITH CHECK as text (`p` is a pg_policy row). */
const policyText = `cross join lateral (
  select pg_get_expr(p.polqual, p.polrelid) as q, pg_get_expr(p.polwithcheck, p.polrelid) as w) e`;
/** The schema is served by PostgREST and is not the platform's. */
const exposed = (n = "n") =>
  `(${n}.nspname = any (ctx.exposed) and ${n}.nspname <> all (ctx.platform))`;

// auth_rls_initplan: a call that reads the request (current_setting, auth.uid() …) not
// already wrapped in a scalar subquery, which the planner would evaluate once (an InitPlan).
const REQUEST_CALL = `(auth\\.(uid|jwt|role|email)\\(\\)|\\mcurrent_setting\\([^()]*\\))`;
const bareCall = (x: string) =>
  `coalesce(regexp_replace(${x}, 'select\\s+${REQUEST_CALL}', '', 'gi') ~* '${REQUEST_CALL}', false)`;
const wrapCalls = (x: string) =>
  `regexp_replace(${x}, '(?<!select )${REQUEST_CALL}', '(select \\1)', 'gi')`;

// rls_policy_always_true: an expression that is constant true (ignoring parentheses/blanks).
const alwaysTrue = (x: string) =>
  `coalesce(regexp_replace(lower(${x}), '[\\s()]', '', 'g') in ('true', '1=1'), false)`;

/** Column names that usually hold credentials or personal data (lower case, '_' for '-'). */
const SENSITIVE_NAMES = [
  // secrets and credentials
  ..."password passwd pwd passphrase password_hash secret client_secret secret_key".split(" "),
  ..."private_key api_key apikey access_token refresh_token id_token token jwt".split(" "),
  ..."session_token session_id otp totp_secret recovery_code auth_code".split(" "),
  // identity documents
  ..."ssn social_security_number passport_number national_id tax_id driver_license".split(" "),
  "drivers_license",
  // money
  ..."credit_card card_number cvv cvc iban bank_account account_number routing_number".split(" "),
  // health
  ..."medical_record health_record diagnosis patient_id".split(" "),
];

/** Types pg_upgrade cannot carry in a user column (their values are OIDs that change). */
const REGS = `array[${
  "regcollation regconfig regdictionary regnamespace regoper regoperator regproc regprocedure"
    .split(" ").map((t) => `'${t}'::regtype`).join(", ")
}]::oid[]`;

/** Every lint, in Supabase's numbering order. */
export const LINTS: Lint[] = [
  {
    name: "unindexed_foreign_keys",
    level: "INFO",
    categories: ["PERFORMANCE"],
    doc: "0001_unindexed_foreign_keys",
    about: "A foreign key whose columns start no index: deleting or updating a referenced row " +
      "scans the referencing table, and joins along the key cannot use an index.",
    fix: "create an index whose leading columns are the foreign key's columns",
    sql: `
      select format('%s.%s:%s', n.nspname, c.relname, k.conname) as object,
             format('foreign key (%s) references %s and no index starts with those columns',
                    cols.list, k.confrelid::regclass) as detail,
             format('create index on %I.%I (%s);', n.nspname, c.relname, cols.list) as fix
      from ctx, pg_catalog.pg_constraint k
      join pg_catalog.pg_class c on c.oid = k.conrelid
      join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      cross join lateral (
        select string_agg(quote_ident(a.attname), ', ' order by u.ord) as list
        from unnest(k.conkey) with ordinality u(attnum, ord)
        join pg_catalog.pg_attribute a on a.attrelid = k.conrelid and a.attnum = u.attnum) cols
      where k.contype = 'f' and ${ours("n")} and ${notFromExtension("pg_class", "c.oid")}
        -- covered: some valid index's first columns are the key's columns, in key order
        and not exists (
          select from pg_catalog.pg_index i
          where i.indrelid = k.conrelid and i.indisvalid
            and (select array_agg(col order by pos)
                 from unnest(i.indkey::int2[]) with ordinality t(col, pos)
                 where pos <= cardinality(k.conkey)) = k.conkey)`,
  },
  {
    name: "auth_users_exposed",
    level: "ERROR",
    categories: ["SECURITY"],
    doc: "0002_auth_users_exposed",
    about: "A view or materialized view the API roles can read that draws from auth.users, " +
      "so user records (emails, metadata) leak through the Data API.",
    fix: "revoke select from anon and authenticated, or move the view out of the exposed schemas",
    sql: `
      select ${rel("n", "v")} as object,
             case when v.relkind = 'm' then 'materialized view over auth.users (matviews have no RLS)'
                  when not ${invoker("v")} then 'view over auth.users runs with its owner''s rights'
                  else 'security_invoker view over auth.users, and auth.users has RLS off' end as detail,
             format('revoke select on %I.%I from anon, authenticated;', n.nspname, v.relname) as fix
      from ctx, pg_catalog.pg_class v
      join pg_catalog.pg_namespace n on n.oid = v.relnamespace
      where v.relkind in ('v', 'm') and ${exposed()} and ${apiReads("v.oid")}
        and exists (
          select from pg_catalog.pg_rewrite r
          join pg_catalog.pg_depend d on d.classid = 'pg_rewrite'::regclass and d.objid = r.oid
          where r.ev_class = v.oid and d.refclassid = 'pg_class'::regclass
            and d.refobjid = to_regclass('auth.users'))
        and (v.relkind = 'm' or not ${invoker("v")}
             or not (select relrowsecurity from pg_catalog.pg_class
                     where oid = to_regclass('auth.users')))`,
  },
  {
    name: "auth_rls_initplan",
    level: "WARN",
    categories: ["PERFORMANCE"],
    doc: "0003_auth_rls_initplan",
    about: "A policy calls current_setting() or auth.uid()/jwt()/role()/email() directly, so " +
      "the call runs for every row instead of once per statement.",
    fix: "wrap each call in a scalar subquery: (select current_setting(...)), (select auth.uid())",
    sql: `
      select format('%s.%s:%s', n.nspname, c.relname, p.polname) as object,
             concat_ws(' and ', case when b.q then 'USING' end, case when b.w then 'WITH CHECK' end)
               || ' calls current_setting()/auth.*() once per row' as detail,
             format('alter policy %I on %I.%I', p.polname, n.nspname, c.relname)
               || case when b.q then format(' using (%s)', ${wrapCalls("e.q")}) else '' end
               || case when b.w then format(' with check (%s)', ${wrapCalls("e.w")}) else '' end
               || ';' as fix
      from ctx, pg_catalog.pg_policy p
      join pg_catalog.pg_class c on c.oid = p.polrelid
      join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      ${policyText}
      cross join lateral (select ${bareCall("e.q")} as q, ${bareCall("e.w")} as w) b
      where c.relrowsecurity and ${ours("n")} and (b.q or b.w)`,
  },
  {
    name: "no_primary_key",
    level: "INFO",
    categories: ["PERFORMANCE"],
    doc: "0004_no_primary_key",
    about: "A table without a primary key: rows cannot be addressed reliably (updates through " +
      "the API, logical replication) and it often hides a missing unique constraint.",
    fix: "add a primary key (alter table … add primary key (…))",
    sql: `
      select ${rel()} as object, 'table has no primary key' as detail, null as fix
      from ctx, pg_catalog.pg_class c
      join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      where c.relkind = 'r' and ${ours("n")} and ${notFromExtension("pg_class", "c.oid")}
        and not exists (select from pg_catalog.pg_index i
                        where i.indrelid = c.oid and i.indisprimary)`,
  },
  {
    name: "unused_index",
    level: "INFO",
    categories: ["PERFORMANCE"],
    doc: "0005_unused_index",
    usesStats: true,
    about: "A non-unique index never scanned since statistics were last reset: it costs " +
      "every write and buys no read.",
    fix: "drop it, once production statistics (not a fresh database) confirm it is unused",
    sql: `
      select format('%s.%s:%s', s.schemaname, s.relname, s.indexrelname) as object,
             format('never scanned (%s)', pg_size_pretty(pg_relation_size(s.indexrelid))) as detail,
             format('drop index %I.%I;', s.schemaname, s.indexrelname) as fix
      from ctx, pg_catalog.pg_stat_user_indexes s
      join pg_catalog.pg_index i on i.indexrelid = s.indexrelid
      join pg_catalog.pg_namespace n on n.nspname = s.schemaname
      where s.idx_scan = 0 and not i.indisunique and not i.indisprimary
        and ${ours("n")} and ${notFromExtension("pg_class", "s.relid")}`,
  },
  {
    name: "multiple_permissive_policies",
    level: "WARN",
    categories: ["PERFORMANCE"],
    doc: "0006_multiple_permissive_policies",
    about: "Several permissive policies for the same role and command on one table: every " +
      "one of them is evaluated (OR-ed) for each row.",
    fix: "merge them into one policy per role and command (OR the conditions)",
    sql: `
      select format('%s.%s:%s:%s', n.nspname, c.relname, r.rolname, cmd) as object,
             'permissive policies ' || string_agg(p.polname, ', ' order by p.polname) as detail,
             null as fix
      from ctx, pg_catalog.pg_policy p
      join pg_catalog.pg_class c on c.oid = p.polrelid
      join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      -- a policy for PUBLIC (role oid 0) applies to every role
      join pg_catalog.pg_roles r on p.polroles = '{0}' or r.oid = any (p.polroles)
      cross join lateral unnest(case p.polcmd
        when 'r' then array['SELECT'] when 'a' then array['INSERT']
        when 'w' then array['UPDATE'] when 'd' then array['DELETE']
        else array['SELECT', 'INSERT', 'UPDATE', 'DELETE'] end) cmd
      where c.relkind in ('r', 'p') and p.polpermissive and ${ours("n")}
        and ${notFromExtension("pg_class", "c.oid")}
        -- roles RLS never applies to, and the platform's own
        and not r.rolbypassrls and r.rolname !~ '^pg_' and r.rolname !~ '^supabase.*admin$'
      group by n.nspname, c.relname, r.rolname, cmd
      having count(*) > 1`,
  },
  {
    name: "policy_exists_rls_disabled",
    level: "ERROR",
    categories: ["SECURITY"],
    doc: "0007_policy_exists_rls_disabled",
    about: "A table has policies but row level security is off, so the policies restrict " +
      "nothing and the table is open to whoever holds privileges on it.",
    fix: "enable row level security on the table (or drop the dead policies)",
    sql: `
      select ${rel()} as object,
             'RLS is off; ignored policies ' || string_agg(p.polname, ', ' order by p.polname) as detail,
             format('alter table %I.%I enable row level security;', n.nspname, c.relname) as fix
      from ctx, pg_catalog.pg_policy p
      join pg_catalog.pg_class c on c.oid = p.polrelid
      join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      where c.relkind in ('r', 'p') and not c.relrowsecurity and ${ours("n")}
        and ${notFromExtension("pg_class", "c.oid")}
      group by n.nspname, c.relname`,
  },
  {
    name: "rls_enabled_no_policy",
    level: "INFO",
    categories: ["SECURITY"],
    doc: "0008_rls_enabled_no_policy",
    about: "Row level security is on but no policy exists, so only roles that bypass RLS " +
      "(service_role; the owner unless RLS is forced) see rows: fine if intended, a bug if " +
      "the API should read it.",
    fix: "add a policy for the roles meant to read it, or allow-list it saying who reads it",
    sql: `
      select ${rel()} as object, 'RLS on, no policy: only RLS-bypassing roles see rows' as detail,
             null as fix
      from ctx, pg_catalog.pg_class c
      join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      where c.relkind in ('r', 'p') and c.relrowsecurity and ${ours("n")}
        and ${notFromExtension("pg_class", "c.oid")}
        and not exists (select from pg_catalog.pg_policy p where p.polrelid = c.oid)`,
  },
  {
    name: "duplicate_index",
    level: "WARN",
    categories: ["PERFORMANCE"],
    doc: "0009_duplicate_index",
    about: "Two or more indexes on a table are the same index under different names: each " +
      "costs writes and space for nothing.",
    fix: "drop all but one (keep the one a constraint uses)",
    sql: `
      select format('%s.%s:%s', nsp, tab, string_agg(idx, ',' order by idx)) as object,
             'identical indexes ' || string_agg(idx, ', ' order by idx) as detail,
             'drop index ' || string_agg(format('%I.%I', nsp, idx), ', ' order by idx)
               filter (where rank > 1) || ';' as fix
      from (
        select n.nspname as nsp, c.relname as tab, x.relname as idx, sig,
               row_number() over (partition by sig order by k.conname is null, x.relname) as rank
        from ctx, pg_catalog.pg_index i
        join pg_catalog.pg_class x on x.oid = i.indexrelid
        join pg_catalog.pg_class c on c.oid = i.indrelid
        join pg_catalog.pg_namespace n on n.oid = c.relnamespace
        left join pg_catalog.pg_constraint k on k.conindid = i.indexrelid and k.conrelid = c.oid
        -- everything that makes two indexes the same index, except the name
        cross join lateral (select concat_ws('|', i.indrelid, x.relam, i.indkey, i.indclass,
          i.indcollation, i.indoption, i.indisunique, i.indnullsnotdistinct,
          pg_get_expr(i.indexprs, i.indrelid), pg_get_expr(i.indpred, i.indrelid)) as sig) s
        where c.relkind in ('r', 'm') and ${ours("n")} and ${notFromExtension("pg_class", "c.oid")}
      ) d
      group by nsp, tab, sig
      having count(*) > 1`,
  },
  {
    name: "security_definer_view",
    level: "ERROR",
    categories: ["SECURITY"],
    doc: "0010_security_definer_view",
    about: "A view the API roles can read runs with its owner's rights (no security_invoker), " +
      "so the owner's privileges and RLS exemption apply instead of the caller's.",
    fix: "alter view … set (security_invoker = true), or revoke select from anon/authenticated",
    sql: `
      select ${rel()} as object, 'view runs with its owner''s rights' as detail,
             format('alter view %I.%I set (security_invoker = true);', n.nspname, c.relname) as fix
      from ctx, pg_catalog.pg_class c
      join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      where c.relkind = 'v' and ${exposed()} and ${apiReads("c.oid")}
        and not ${invoker("c")} and ${notFromExtension("pg_class", "c.oid")}
        -- security_invoker exists from PostgreSQL 15 on
        and current_setting('server_version_num')::int >= 150000`,
  },
  {
    name: "function_search_path_mutable",
    level: "WARN",
    categories: ["SECURITY"],
    doc: "0011_function_search_path_mutable",
    about: "A function without its own search_path resolves names through the caller's, " +
      "which a caller can point at objects of its own.",
    fix: "alter function … set search_path = '' and schema-qualify what it uses",
    sql: `
      select p.oid::regprocedure::text as object, 'no search_path setting' as detail,
             format('alter %s %s set search_path = '''';',
                    case p.prokind when 'p' then 'procedure' else 'function' end,
                    p.oid::regprocedure) as fix
      from ctx, pg_catalog.pg_proc p
      join pg_catalog.pg_namespace n on n.oid = p.pronamespace
      -- aggregates cannot carry settings
      where p.prokind <> 'a' and ${ours("n")} and ${notFromExtension("pg_proc", "p.oid")}
        and not exists (select from unnest(p.proconfig) s where s like 'search_path=%')`,
  },
  {
    name: "rls_disabled_in_public",
    level: "ERROR",
    categories: ["SECURITY"],
    doc: "0013_rls_disabled_in_public",
    about: "A table in a schema the API serves, readable by anon or authenticated, with row " +
      "level security off: every row is readable (and writable, per grants) through the API.",
    fix: "enable row level security and add policies, or revoke the API roles' privileges",
    sql: `
      select ${rel()} as object, 'API-readable table with RLS off' as detail,
             format('alter table %I.%I enable row level security;', n.nspname, c.relname) as fix
      from ctx, pg_catalog.pg_class c
      join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      where c.relkind in ('r', 'p') and not c.relrowsecurity and ${exposed()}
        and ${apiReads("c.oid")}`,
  },
  {
    name: "extension_in_public",
    level: "WARN",
    categories: ["SECURITY"],
    doc: "0014_extension_in_public",
    about: "An extension installed in schema public: its functions and tables become part of " +
      "the exposed API surface and clutter every search_path.",
    fix: "alter extension … set schema extensions (or drop and re-create it there)",
    sql: `
      select e.extname::text as object, 'installed in schema public' as detail,
             case when e.extrelocatable
               then format('alter extension %I set schema extensions;', e.extname)
               else format('drop extension %I; create extension %I with schema extensions;',
                           e.extname, e.extname) end as fix
      from ctx, pg_catalog.pg_extension e
      where e.extnamespace = 'public'::regnamespace and e.extname <> 'plpgsql'`,
  },
  {
    name: "rls_references_user_metadata",
    level: "ERROR",
    categories: ["SECURITY"],
    doc: "0015_rls_references_user_metadata",
    about: "A policy trusts the JWT's user_metadata, which every user can edit for " +
      "themselves: whatever the policy grants on it, anyone can grant themselves.",
    fix: "decide on app_metadata (only the service role writes it) or on a table of your own",
    sql: `
      select format('%s.%s:%s', n.nspname, c.relname, p.polname) as object,
             'policy reads user_metadata from the JWT' as detail, null as fix
      from ctx, pg_catalog.pg_policy p
      join pg_catalog.pg_class c on c.oid = p.polrelid
      join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      ${policyText}
      where ${ours("n")}
        and concat_ws(' ', e.q, e.w) ~* '(auth\\.jwt\\(\\)|request\\.jwt\\.claim).*user_metadata'`,
  },
  {
    name: "materialized_view_in_api",
    level: "WARN",
    categories: ["SECURITY"],
    doc: "0016_materialized_view_in_api",
    about: "A materialized view the API roles can read: matviews have no RLS, so every row " +
      "is served to anyone the grant reaches.",
    fix: "revoke select from anon and authenticated, or move it out of the exposed schemas",
    sql: `
      select ${rel()} as object, 'API-readable materialized view (no RLS possible)' as detail,
             format('revoke select on %I.%I from anon, authenticated;', n.nspname, c.relname) as fix
      from ctx, pg_catalog.pg_class c
      join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      where c.relkind = 'm' and ${exposed()} and ${apiReads("c.oid")}
        and ${notFromExtension("pg_class", "c.oid")}`,
  },
  {
    name: "foreign_table_in_api",
    level: "WARN",
    categories: ["SECURITY"],
    doc: "0017_foreign_table_in_api",
    about: "A foreign table the API roles can read: foreign tables ignore RLS, so the remote " +
      "data is served to anyone the grant reaches.",
    fix: "revoke select from anon and authenticated, or move it out of the exposed schemas",
    sql: `
      select ${rel()} as object, 'API-readable foreign table (no RLS possible)' as detail,
             format('revoke select on %I.%I from anon, authenticated;', n.nspname, c.relname) as fix
      from ctx, pg_catalog.pg_class c
      join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      where c.relkind = 'f' and ${exposed()} and ${apiReads("c.oid")}
        and ${notFromExtension("pg_class", "c.oid")}`,
  },
  {
    name: "unsupported_reg_types",
    level: "WARN",
    categories: ["SECURITY"],
    doc: "0018_unsupported_reg_types",
    about: "A stored column of a reg* type that pg_upgrade refuses (it stores OIDs that change " +
      "across an upgrade), which blocks upgrading the project's Postgres.",
    fix: "store the name as text (or regclass/regtype/regrole, which pg_upgrade carries)",
    sql: `
      select format('%s.%s.%s', n.nspname, c.relname, a.attname) as object,
             format('column of type %s', format_type(a.atttypid, a.atttypmod)) as detail,
             null as fix
      from ctx, pg_catalog.pg_attribute a
      join pg_catalog.pg_class c on c.oid = a.attrelid
      join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      join pg_catalog.pg_type t on t.oid = a.atttypid
      -- pg_upgrade cares about every stored column, whoever owns the schema
      where c.relkind in ('r', 'p', 'm') and a.attnum > 0 and not a.attisdropped
        and n.nspname not in ('pg_catalog', 'information_schema')
        and (t.oid = any (${REGS}) or t.typelem = any (${REGS})
             or t.typbasetype = any (${REGS}))`,
  },
  {
    name: "insecure_queue_exposed_in_api",
    level: "ERROR",
    categories: ["SECURITY"],
    doc: "0019_insecure_queue_exposed_in_api",
    about: "With queues exposed to the API (schema pgmq_public served), a queue table without " +
      "RLS that the API roles can read: anyone the grant reaches reads or pops its messages.",
    fix: "enable row level security on the queue table (and add policies), or revoke the grant",
    sql: `
      select ${rel()} as object, 'queue table readable through pgmq_public with RLS off' as detail,
             format('alter table %I.%I enable row level security;', n.nspname, c.relname) as fix
      from ctx, pg_catalog.pg_class c
      join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      where 'pgmq_public' = any (ctx.exposed) and n.nspname = 'pgmq'
        and c.relkind in ('r', 'p') and c.relname like 'q\\_%' and not c.relrowsecurity
        and ${apiReads("c.oid")}`,
  },
  {
    name: "table_bloat",
    level: "INFO",
    categories: ["PERFORMANCE"],
    doc: "0020_table_bloat",
    usesStats: true,
    about: "A table far larger on disk than its live rows need (at least 20 MB and half of it " +
      "dead space, estimated from the planner's statistics).",
    fix: "vacuum full (locks the table) or pg_repack it, then tune autovacuum for it",
    sql: `
      select ${rel()} as object,
             format('about %s of %s is dead space', pg_size_pretty(g.size - g.need),
                    pg_size_pretty(g.size)) as detail,
             format('vacuum full %I.%I;', n.nspname, c.relname) as fix
      from ctx, pg_catalog.pg_class c
      join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      cross join lateral (
        select sum(s.avg_width * (1 - s.null_frac))::numeric as width
        from pg_catalog.pg_stats s where s.schemaname = n.nspname and s.tablename = c.relname) w
      -- a heap row costs its data plus a 24-byte header and a 4-byte line pointer; a page
      -- gives 24 bytes to its own header
      cross join lateral (
        select c.relpages::numeric * b.size as size,
               ceil(c.reltuples::numeric * (w.width + 28) / (b.size - 24)) * b.size as need
        from (select current_setting('block_size')::numeric as size) b) g
      where c.relkind in ('r', 'm') and c.reltuples >= 0 and w.width is not null
        and n.nspname not in ('pg_catalog', 'information_schema')
        and g.size - g.need >= 20 * 1024 * 1024 and g.size - g.need > g.size / 2`,
  },
  {
    name: "fkey_to_auth_unique",
    level: "ERROR",
    categories: ["SECURITY"],
    doc: "0021_fkey_to_auth_unique",
    about: "A foreign key to a unique constraint in schema auth other than a primary key: " +
      "Supabase Auth may change or drop those constraints, and the key then blocks its " +
      "migrations.",
    fix: "reference the primary key instead (auth.users(id))",
    sql: `
      select format('%s.%s:%s', n.nspname, c.relname, k.conname) as object,
             format('references %s through unique index %s', k.confrelid::regclass,
                    k.conindid::regclass) as detail,
             format('alter table %I.%I drop constraint %I;', n.nspname, c.relname, k.conname)
               as fix
      from ctx, pg_catalog.pg_constraint k
      join pg_catalog.pg_class c on c.oid = k.conrelid
      join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      join pg_catalog.pg_class r on r.oid = k.confrelid
      join pg_catalog.pg_index i on i.indexrelid = k.conindid
      where k.contype = 'f' and r.relnamespace = to_regnamespace('auth')
        and i.indisunique and not i.indisprimary`,
  },
  {
    name: "extension_versions_outdated",
    level: "WARN",
    categories: ["SECURITY"],
    doc: "0022_extension_versions_outdated",
    about: "An extension is installed at a version other than the one the server recommends " +
      "(its default), which may miss fixes.",
    fix: "alter extension … update (on hosted, some need a platform upgrade first)",
    sql: `
      select e.extname::text as object,
             format('installed %s, default %s', e.extversion, a.default_version) as detail,
             format('alter extension %I update;', e.extname) as fix
      from ctx, pg_catalog.pg_extension e
      join pg_catalog.pg_available_extensions a on a.name = e.extname
      where a.default_version is not null and e.extversion <> a.default_version
        -- versions the server no longer ships (left over from an upgrade) are not judged
        and exists (select from pg_catalog.pg_available_extension_versions v
                    where v.name = e.extname and v.version = e.extversion)`,
  },
  {
    name: "sensitive_columns_exposed",
    level: "ERROR",
    categories: ["SECURITY"],
    doc: "0023_sensitive_columns_exposed",
    about: "An API-readable table with RLS off has columns whose names suggest secrets or " +
      "personal data (password, token, ssn, card_number …).",
    fix: "enable row level security and add policies, or revoke the API roles' privileges",
    sql: `
      select ${rel()} as object,
             'RLS off, sensitive columns ' || string_agg(a.attname, ', ' order by a.attname)
               as detail,
             format('alter table %I.%I enable row level security;', n.nspname, c.relname) as fix
      from ctx, pg_catalog.pg_class c
      join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      join pg_catalog.pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
      where c.relkind in ('r', 'p') and not c.relrowsecurity and ${exposed()}
        and ${apiReads("c.oid")}
        and replace(lower(a.attname), '-', '_') = any (array[${
      SENSITIVE_NAMES.map(literal).join(", ")
    }])
      group by n.nspname, c.relname`,
  },
  {
    name: "rls_policy_always_true",
    level: "WARN",
    categories: ["SECURITY"],
    doc: "0024_permissive_rls_policy",
    about: "A permissive policy for anon, authenticated or PUBLIC lets every row be changed " +
      "or inserted (USING/WITH CHECK constant true or missing), which switches RLS off for " +
      "writes. Read-only true policies (public data) are left alone.",
    fix: "give the policy a real condition, or drop it and let an RPC do the writes",
    sql: `
      select format('%s.%s:%s', n.nspname, c.relname, p.polname) as object,
             format('%s policy %s', k.cmd, concat_ws(' and ',
               case when v.any_row then 'matches every row' end,
               case when v.any_new then 'accepts every new row' end)) as detail,
             null as fix
      from ctx, pg_catalog.pg_policy p
      join pg_catalog.pg_class c on c.oid = p.polrelid
      join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      ${policyText}
      cross join lateral (select case p.polcmd when 'r' then 'SELECT' when 'a' then 'INSERT'
        when 'w' then 'UPDATE' when 'd' then 'DELETE' else 'ALL' end as cmd) k
      cross join lateral (select
        -- an absent USING lets every row through; an absent WITH CHECK falls back to USING
        k.cmd in ('UPDATE', 'DELETE', 'ALL') and (e.q is null or ${alwaysTrue("e.q")}) as any_row,
        ${alwaysTrue("e.w")} or (e.w is null and k.cmd = 'INSERT')
          or (e.w is null and k.cmd in ('UPDATE', 'ALL') and ${alwaysTrue("e.q")}) as any_new) v
      where c.relkind in ('r', 'p') and c.relrowsecurity and p.polpermissive and ${ours("n")}
        and (p.polroles = '{0}' or exists (select from unnest(p.polroles) r
                                          where r in ('anon'::regrole, 'authenticated'::regrole)))
        and (v.any_row or v.any_new)`,
  },
  ...(["anon", "authenticated"] as const).map((role): Lint => ({
    name: `pg_graphql_${role}_table_exposed`,
    level: "WARN",
    categories: ["SECURITY"],
    doc: `${role === "anon" ? "0026" : "0027"}_pg_graphql_${role}_table_exposed`,
    about: `A relation ${role} can select from is listed, with its columns and relations, ` +
      `in the GraphQL schema served to ${
        role === "anon" ? "anyone holding the anon key" : "every signed-in user"
      } (RLS filters rows, not the schema).`,
    fix: `revoke select from ${role} if ${
      role === "anon" ? "visitors" : "signed-in users"
    } should not see it exists`,
    sql: `
      select ${rel()} as object,
             format('%s in the GraphQL schema for ${role}',
                    case c.relkind when 'r' then 'table' when 'v' then 'view'
                      when 'm' then 'materialized view' else 'foreign table' end) as detail,
             format('revoke select on %I.%I from ${role};', n.nspname, c.relname) as fix
      from ctx, pg_catalog.pg_class c
      join pg_catalog.pg_namespace n on n.oid = c.relnamespace
      where ctx.graphql and c.relkind in ('r', 'v', 'm', 'f') and ${ours("n")}
        -- pg_graphql reflects what the role may reach: schema usage and one readable column
        and has_schema_privilege('${role}', n.oid, 'usage')
        and exists (select from pg_catalog.pg_attribute a
                    where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
                      and has_column_privilege('${role}', c.oid, a.attnum, 'select'))`,
  })),
  ...(["anon", "authenticated"] as const).map((role): Lint => ({
    name: `${role}_security_definer_function_executable`,
    level: "WARN",
    categories: ["SECURITY"],
    doc: `${role === "anon" ? "0028" : "0029"}_${role}_security_definer_function_executable`,
    about: `A SECURITY DEFINER function in an exposed schema that ${role} may execute: ${
      role === "anon" ? "anyone with the anon key" : "any signed-in user"
    } runs it over /rest/v1/rpc with its owner's rights, past RLS.`,
    fix: `revoke execute from ${role} (and PUBLIC), or make it SECURITY INVOKER`,
    sql: `
      select p.oid::regprocedure::text as object,
             'SECURITY DEFINER, callable by ${role} over /rest/v1/rpc/' || p.proname as detail,
             format('revoke execute on function %s from public, ${role};', p.oid::regprocedure)
               as fix
      from ctx, pg_catalog.pg_proc p
      join pg_catalog.pg_namespace n on n.oid = p.pronamespace
      where p.prosecdef and ${exposed()}
        and has_function_privilege('${role}', p.oid, 'execute')`,
  })),
];
