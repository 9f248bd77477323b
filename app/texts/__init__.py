"""Message texts staff edit in the admin (/admin/texts): the catalog's customer-facing entries per language,
overridden by `MessageText` rows. `service` lists and validates them; `overrides` puts the rows in force for
each request, bot update and job (through `app.kit.i18n.OVERRIDES`)."""
