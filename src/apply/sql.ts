/** SQL text helpers. Identifiers are always quoted; values never appear in SQL text. */

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export function qualified(schema: string, name: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(name)}`;
}

/** "schema.name" for messages, unquoted. */
export function displayName(schema: string, name: string): string {
  return `${schema}.${name}`;
}
