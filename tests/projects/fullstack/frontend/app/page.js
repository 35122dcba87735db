export default function Home() {
  return <main>API at {process.env.NEXT_PUBLIC_API_URL}</main>;
}
