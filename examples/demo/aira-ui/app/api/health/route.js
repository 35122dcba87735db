// Health probe of the UI itself; it must not depend on the other services.
export const dynamic = "force-dynamic";

export function GET() {
  return Response.json({ status: "ok" });
}
