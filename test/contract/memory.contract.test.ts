import { MemoryTransport } from '../../src/transport/memory.js';
import { transportContract } from './transport.contract.js';

transportContract('memory', async () => {
  const transport = new MemoryTransport();
  return { transport, cleanup: () => transport.close() };
});
