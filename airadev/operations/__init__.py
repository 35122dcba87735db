"""What the commands do: each operation returns a result or raises AiradevError; none prints."""
