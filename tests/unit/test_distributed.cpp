// The launch-dependent MPI presets, the deterministic schedule (amosprep/distributed.hpp) and the share of lent
// cores (amosprep/core_sharing.hpp).
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "amosprep/core_sharing.hpp"
#include "amosprep/distributed.hpp"

using namespace amosprep;

namespace {

EnvLookup env_of(const std::map<std::string, std::string>& vars) {
  return [vars](const char* name) -> std::optional<std::string> {
    const auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

}  // namespace

TEST(SingleNodePml, SingletonAndOneNodeMpirunGetSharedMemory) {
  EXPECT_EQ(single_node_pml(env_of({})), "ob1");
  EXPECT_EQ(single_node_pml(env_of({{"OMPI_COMM_WORLD_SIZE", "64"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "64"}})), "ob1");
}

TEST(SingleNodePml, SeveralNodesOrUnknownKeepOpenMpisChoice) {
  EXPECT_EQ(single_node_pml(env_of({{"OMPI_COMM_WORLD_SIZE", "64"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "32"}})), "");
  EXPECT_EQ(single_node_pml(env_of({{"OMPI_COMM_WORLD_SIZE", "64"}})), "");
  // srun: only the step's node count says whether the ranks share the node.
  EXPECT_EQ(single_node_pml(env_of({{"SLURM_PROCID", "3"}, {"SLURM_STEP_NUM_NODES", "2"}})), "");
  EXPECT_EQ(single_node_pml(env_of({{"PMIX_RANK", "0"}})), "");
  EXPECT_EQ(single_node_pml(env_of({{"SLURM_PROCID", "3"}, {"SLURM_STEP_NUM_NODES", "1"}})), "ob1");
  // mpirun inside a one-node batch step that spans two nodes: mpirun's own counts decide.
  EXPECT_EQ(single_node_pml(env_of({{"SLURM_PROCID", "0"},
                                    {"SLURM_STEP_NUM_NODES", "1"},
                                    {"OMPI_COMM_WORLD_SIZE", "8"},
                                    {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"}})),
            "");
}

TEST(SingleNodePml, UsersChoiceIsNeverOverridden) {
  EXPECT_EQ(single_node_pml(env_of({{"OMPI_MCA_pml", "ucx"}})), "");
  EXPECT_EQ(single_node_pml(env_of({{"OMPI_MCA_pml", "^ucx"},
                                    {"OMPI_COMM_WORLD_SIZE", "2"},
                                    {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}})),
            "");
}

TEST(LargestFirstSchedule, BalancesAndBreaksTiesByIndex) {
  // 5 and 4 go to different ranks; 3 joins the lighter one; equal costs go in index order.
  EXPECT_EQ(largest_first_schedule({3, 5, 4}, 2), (std::vector<int>{1, 0, 1}));
  EXPECT_EQ(largest_first_schedule({1, 1, 1, 1}, 2), (std::vector<int>{0, 1, 0, 1}));
  EXPECT_EQ(largest_first_schedule({2, 7}, 1), (std::vector<int>{0, 0}));
}

TEST(CoreShare, EvenShareOfIdleRanksLessWhatIsHeld) {
  // 61 idle ranks, 3 still working: about a third each, whoever asks first.
  EXPECT_EQ(core_share(61, 0, 3, 0), 21);
  EXPECT_EQ(core_share(40, 21, 3, 0), 21);
  EXPECT_EQ(core_share(19, 42, 3, 0), 19);  // never more than is offered
  // One working rank takes everything, and nothing more once it holds its share.
  EXPECT_EQ(core_share(1, 0, 1, 0), 1);
  EXPECT_EQ(core_share(0, 1, 1, 1), 0);
  // A rank that finished gives its cores back and they are shared out again.
  EXPECT_EQ(core_share(3, 2, 2, 2), 1);
  EXPECT_EQ(core_share(0, 4, 2, 2), 0);
  EXPECT_EQ(core_share(5, 0, 0, 0), 0);  // nobody works: nothing to take
}
