"""What `fercli plugins` shows: each plugin, its origin and version, and what it registers."""

from fercli import registry
from fercli.plugins import load_plugins, plugin_info, pm


def plugins_report() -> list[dict]:
    load_plugins()
    registers: dict[str, dict[str, list[str]]] = {}
    for kind in registry.HOOKS:
        for entry in registry.entries(kind).values():
            registers.setdefault(entry.plugin, {}).setdefault(kind + "s", []).append(entry.name)
    report = []
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin)
        info = plugin_info.get(name)
        hooks = [h.name for h in pm.get_hookcallers(plugin) or []]
        regs = registers.get(name, {})
        if "register_commands" in hooks:
            regs["commands"] = ["(adds CLI commands)"]
        report.append(
            {
                "name": name,
                "origin": info.origin if info else "registered at run time",
                "version": info.version if info else "-",
                "source": info.source if info else "-",
                "hooks": sorted(hooks),
                "registers": regs,
            }
        )
    return report
