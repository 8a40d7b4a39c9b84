-- why: saga timers (step timeouts, retry back-offs) are set and compared on the database clock. This function is that clock: now() plus an offset that a session may set in the custom setting sagaflow.clock_offset_ms. Production never sets it, so it is exactly now(); the test kit (sagaflow/testing) sets it on its own connections to move time forward without waiting. A simple SQL function, STABLE like now(), is inlined by the planner: comparisons with it still use the wake_at index.

CREATE OR REPLACE FUNCTION sagaflow_now() RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT now() + coalesce(nullif(current_setting('sagaflow.clock_offset_ms', true), ''), '0')::float8 * interval '1 millisecond' $$;
