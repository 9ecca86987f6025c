/**
 * Third-party modules for the edge functions, with full `npm:` specifiers so the functions
 * deploy to hosted Supabase with no import map. Import from here, never the registry.
 *
 * @module
 */
export { createClient, type SupabaseClient } from "npm:@supabase/supabase-js@2.119.1";
export { z } from "npm:zod@3.25.76";
