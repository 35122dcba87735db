export const metadata = {
  title: "AiRa demo UI",
  description: "Stand-in for the AiRa receptionist UI (airadev demo stack)",
};

export default function RootLayout({ children }) {
  return (
    <html lang="en">
      <body style={{ fontFamily: "system-ui, sans-serif", margin: "2rem" }}>
        {children}
      </body>
    </html>
  );
}
