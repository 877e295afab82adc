import type pg from 'pg';

/**
 * One transaction on a client checked out of the pool: BEGIN (`begin` may add
 * an isolation level), `work`, COMMIT; ROLLBACK on any error, and the client
 * always goes back. A server that dies between two statements makes the
 * checked-out client emit 'error' by itself: that is absorbed here (the next
 * query reports it), never an unhandled error event.
 */
export async function inTransaction<T>(
  pool: pg.Pool,
  begin: string,
  work: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  const ignore = () => {};
  client.on('error', ignore);
  try {
    await client.query(begin);
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.off('error', ignore);
    client.release();
  }
}
