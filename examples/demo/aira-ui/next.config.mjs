// Minimal config for the airadev demo UI. Telemetry is turned off by the
// orchestrator through NEXT_TELEMETRY_DISABLED=1; nothing here reaches the network.
/** @type {import('next').NextConfig} */
const nextConfig = {
  reactStrictMode: true,
};

export default nextConfig;
