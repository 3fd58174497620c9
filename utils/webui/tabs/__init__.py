"""The WebUI's tabs, one module each (data, vocab, train, test, export): each `build(ctx)` adds its widgets to
the Blocks being built and wires them to handlers that return one value per output on every path."""
