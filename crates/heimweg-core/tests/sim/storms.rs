//! Storms, floods and failovers as stock clients live them.
