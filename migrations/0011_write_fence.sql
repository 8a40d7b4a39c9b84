-- why: a batch's write statement carries its own optimistic-version fence, so that COMMIT can be sent right behind it in the same round trip: when the fence fails the statement fails, the transaction is aborted and the COMMIT that follows only rolls it back. SQLSTATE 40001 (serialization failure) makes the worker re-run the batch with fresh reads, as it does for any serialization failure.
CREATE OR REPLACE FUNCTION sagaflow_fence(ok boolean, detail text) RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
  IF ok IS NOT TRUE THEN
    RAISE EXCEPTION 'sagaflow: %', detail USING ERRCODE = '40001';
  END IF;
  RETURN true;
END
$$;
