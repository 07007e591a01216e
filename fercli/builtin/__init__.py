"""fercli's built-in plugins, registered exactly like external ones (see fercli.plugins)."""
