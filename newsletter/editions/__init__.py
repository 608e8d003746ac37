"""Editions: plan (variants, articles), freeze (rates, audience), read back and render,
and the web archive of sent editions."""
