-- 003_idem_owner.sql — which server process claimed a pending Idempotency-Key (D7): a claim
-- whose process is gone (killed mid-request) is abandoned, so the client's retry runs instead
-- of answering 409 for 24 h. "<boot id>:<pid>:<process start time>"; NULL on older rows.
ALTER TABLE idempotency_keys ADD COLUMN owner text;
