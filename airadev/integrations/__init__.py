"""Adapters to the systems airadev drives: env files now; ngrok, Twilio, Supabase, Docker later."""
