-- Every change of a session row, by any access point sharing this database, is announced on
-- ah_session_rows ("tenant<TAB>session"): each replica's read cache (rendered GET /sessions/{id}
-- and /sessions answers, ETags) drops what another replica changed. A trigger, so no writer can
-- forget it; PostgreSQL folds identical notices of one transaction into one.
CREATE FUNCTION ah_session_row_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r sessions%ROWTYPE;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD;
    ELSE
        r := NEW;
    END IF;
    PERFORM pg_notify('ah_session_rows', r.tenant_id || E'\t' || r.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER sessions_row_changed AFTER INSERT OR UPDATE OR DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION ah_session_row_changed();
