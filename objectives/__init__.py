"""Pure torch losses and metrics, one module per problem kind; they know no trainer."""
