-- Knowledge-base documents; a new one is posted to the KB updater by a trigger (AiRa guide).
CREATE TABLE kb_documents (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  business_id uuid,
  title text NOT NULL,
  storage_path text,
  status text NOT NULL DEFAULT 'pending',
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION notify_kb_updater_webhook()
RETURNS TRIGGER AS $$
DECLARE
  webhook_url TEXT := 'https://kb-updater-production.up.railway.app/process-document';
  payload JSONB;
BEGIN
  payload := jsonb_build_object(
    'type', TG_OP,
    'table', TG_TABLE_NAME,
    'record', row_to_json(NEW)
  );

  -- pg_net's body is jsonb: the guide's `body := payload::text` finds no such function.
  PERFORM net.http_post(
    url := webhook_url,
    headers := '{"Content-Type": "application/json"}'::jsonb,
    body := payload
  );

  RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER kb_documents_notify AFTER INSERT ON kb_documents
  FOR EACH ROW EXECUTE FUNCTION notify_kb_updater_webhook();
