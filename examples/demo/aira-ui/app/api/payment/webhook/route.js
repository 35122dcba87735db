// Stripe → UI webhook, at the path the AiRa guide names (/api/payment/webhook). The signature is
// verified with the official `stripe` package against STRIPE_WEBHOOK_SECRET, read from
// .env.local at each request (next dev reloads it when airadev writes the listener's secret).
import Stripe from "stripe";

export const dynamic = "force-dynamic";

const HANDLED = new Set(["checkout.session.completed", "payment_intent.succeeded", "payment_intent.payment_failed"]);

export async function POST(request) {
  const body = await request.text();
  const signature = request.headers.get("stripe-signature") ?? "";
  let event;
  try {
    event = await Stripe.webhooks.constructEventAsync(body, signature, process.env.STRIPE_WEBHOOK_SECRET ?? "");
  } catch (err) {
    console.log(`stripe webhook: rejected: ${err.message}`);
    return Response.json({ error: "signature verification failed" }, { status: 400 });
  }
  const handled = HANDLED.has(event.type);
  console.log(`stripe webhook: ${event.type} ${event.id} verified${handled ? "" : " (not handled)"}`);
  return Response.json({ received: true, type: event.type, handled });
}
