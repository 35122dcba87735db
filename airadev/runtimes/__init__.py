"""How a service is run: the protocol every runtime implements (``base``) and the registry.

``process`` (a process group), ``postgres`` (a local PostgreSQL cluster), ``supabase`` (the
Supabase CLI's containers) and ``docker`` (a container); ``environment`` is what each service's
process or container gets in its environment. Outside systems are reached through
``airadev.integrations``.
"""

from __future__ import annotations

from airadev.errors import AiradevError
from airadev.model import Runtime as RuntimeKind
from airadev.runtimes.base import Context, Fatal, Instance, OnOutput, Runtime

__all__ = ["Context", "Fatal", "Instance", "OnOutput", "Runtime", "runtime_for"]


def runtime_for(kind: RuntimeKind, ctx: Context) -> Runtime:
    if kind is RuntimeKind.PROCESS:
        from airadev.runtimes.process import ProcessRuntime

        return ProcessRuntime(ctx.marker)
    if kind is RuntimeKind.DOCKER:
        from airadev.runtimes.docker import DockerRuntime

        return DockerRuntime(ctx)
    if kind is RuntimeKind.POSTGRES:
        from airadev.runtimes.postgres import PostgresRuntime

        return PostgresRuntime(ctx)
    if kind is RuntimeKind.SUPABASE:
        from airadev.runtimes.supabase import SupabaseRuntime

        return SupabaseRuntime(ctx)
    if kind is RuntimeKind.STRIPE:
        from airadev.runtimes.stripe import StripeRuntime

        return StripeRuntime(ctx)
    # Config validation admits only the runtimes above; reaching this is a bug in airadev.
    raise AiradevError(f"airadev has no '{kind}' runtime", "report this: the config validation let it through")
