// Rendered on every request so env changes (.env.local) and service health
// show up immediately.
export const dynamic = "force-dynamic";

const DEFAULT_VOICE_HEALTH = "http://127.0.0.1:8000/health";
const DEFAULT_KB_HEALTH = "http://127.0.0.1:8080/health";

async function probe(url) {
  try {
    const res = await fetch(url, {
      cache: "no-store",
      signal: AbortSignal.timeout(1000),
    });
    return res.ok ? "ok" : "down";
  } catch {
    return "down";
  }
}

export default async function Home() {
  const voiceUrl = process.env.VOICE_AGENT_HEALTH_URL || DEFAULT_VOICE_HEALTH;
  const kbUrl = process.env.KB_UPDATER_HEALTH_URL || DEFAULT_KB_HEALTH;
  const [voice, kb] = await Promise.all([probe(voiceUrl), probe(kbUrl)]);
  // A single string child: React renders it without comment separators, so
  // the HTML reads id="voice-agent-service-url">VALUE</code>.
  const serviceUrl = String(process.env.VOICE_AGENT_SERVICE_URL ?? "");

  return (
    <main>
      <h1>AiRa demo UI</h1>
      <p>
        This is a stand-in for the AiRa Next.js UI, run by airadev for the demo
        stack.
      </p>
      <dl>
        <dt>VOICE_AGENT_SERVICE_URL</dt>
        <dd>
          <code id="voice-agent-service-url">{serviceUrl}</code>
        </dd>
        <dt>Voice agent ({voiceUrl})</dt>
        <dd id="health-voice">{voice}</dd>
        <dt>KB updater ({kbUrl})</dt>
        <dd id="health-kb">{kb}</dd>
      </dl>
    </main>
  );
}
