-- The phone numbers a business has bought, with the webhooks Twilio calls (AiRa guide).
CREATE TABLE business_numbers (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  business_id uuid,
  phone_number text NOT NULL UNIQUE,
  voice_url text,
  sms_url text,
  status_callback_url text,
  is_active boolean NOT NULL DEFAULT true,
  created_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE business_numbers ENABLE ROW LEVEL SECURITY;
CREATE POLICY "service role manages numbers" ON business_numbers TO service_role USING (true);

-- The demo's test number (the one in airadev.toml's [twilio] test_number).
INSERT INTO business_numbers (phone_number, voice_url, sms_url, status_callback_url)
VALUES ('+15005550006',
        'https://voice-agent-production.up.railway.app/webhooks/twilio/call',
        'https://voice-agent-production.up.railway.app/webhooks/twilio/sms',
        'https://voice-agent-production.up.railway.app/webhooks/twilio/status');
